//! REGISTER (the [`Control`] impl): the region, the program, the sockets
//! and their rings, and the reply.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::c_int;
use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use super::pool::{Lease, Pool};
use super::prog::{self, Attach, Attachment};
use super::sys::{
    self, bind, getsockopt, setsockopt, SockaddrXdp, XdpMmapOffsets, XdpUmemReg, AF_XDP, XDP_COPY,
    XDP_MAX_TX_SKB_BUDGET, XDP_MMAP_OFFSETS, XDP_OPTIONS, XDP_OPTIONS_ZEROCOPY, XDP_PACKET_HEADROOM,
    XDP_PGOFF_RX_RING, XDP_PGOFF_TX_RING, XDP_RX_RING, XDP_SHARED_UMEM, XDP_TX_RING,
    XDP_UMEM_COMPLETION_RING, XDP_UMEM_FILL_RING, XDP_UMEM_PGOFF_COMPLETION_RING, XDP_UMEM_PGOFF_FILL_RING,
    XDP_UMEM_REG, XDP_USE_NEED_WAKEUP,
};
use super::xsk::XskRing;
use super::{modes, AfXdpFd, Port, RingView, RxState, Sock, TxState};
use crate::backend::afpacket::{
    self, epoll_create, epoll_ctl, if_index, if_mtu, ring_bytes, rx_queues, RING_ALIGN,
};
use crate::backend::kregister::{self, Selection};
use crate::backend::kring::Slot;
use crate::backend::{errno, Control, Mapping, PortFd};
use crate::ffi::{netmap_ring, nmreq_pools_info, nmreq_port_info_get, nmreq_register, NR_NO_TX_POLL};
use crate::ring::RESERVED_BUFS;
use crate::spec::PortSpec;

/// Frame (UMEM chunk, netmap buffer) sizes: the smallest that holds the
/// MTU, an Ethernet header, a VLAN tag and the kernel's headroom. A chunk
/// is at most a page.
const MIN_FRAME: usize = 2048;
pub(super) const MAX_FRAME: usize = 4096;
/// An Ethernet header and a VLAN tag: what a frame carries beyond the MTU.
const ETH_VLAN: usize = 18;
/// Frames copy mode sends per `sendto`, where the kernel lets us choose
/// (measured on veth, 60-byte frames into a peer that drops them: 32 gave
/// 0.80 M packets/s, 256 0.86 to 1.05 M, 2048 0.83 to 0.91 M).
const TX_BUDGET: u32 = 256;
/// Slots per ring when the request says 0.
const DEFAULT_SLOTS: u32 = 2048;
const MIN_SLOTS: u32 = 64;
/// Most slots per ring: a socket pins `2 * slots` frames.
const MAX_SLOTS: u32 = 8192;

/// The frame size for an interface of MTU `mtu`, or `None` if no frame
/// holds its packets (this backend binds no multi-buffer sockets).
pub(crate) fn frame_size(mtu: u32) -> Option<usize> {
    let need = (mtu as usize).saturating_add(ETH_VLAN + XDP_PACKET_HEADROOM);
    [MIN_FRAME, MAX_FRAME].into_iter().find(|&f| need <= f)
}

/// The largest MTU whose packets fit a frame.
pub(super) fn max_mtu() -> usize {
    MAX_FRAME - XDP_PACKET_HEADROOM - ETH_VLAN
}

/// Slots of a ring asked with `asked` (0: the default): a power of two, as
/// AF_XDP rings are.
fn slots(asked: u32) -> u32 {
    if asked == 0 {
        DEFAULT_SLOTS
    } else {
        asked.clamp(MIN_SLOTS, MAX_SLOTS).next_power_of_two()
    }
}

/// The shape of a port's rings and where its headers go.
#[derive(Debug, Clone, Copy)]
struct Layout {
    rx_slots: u32,
    tx_slots: u32,
    has_rx: bool,
    has_tx: bool,
    pairs: u32,
    socks: u32,
}

impl Layout {
    fn rx_frames(&self) -> u32 {
        if self.has_rx {
            self.rx_slots
        } else {
            0
        }
    }

    fn tx_frames(&self) -> u32 {
        if self.has_tx {
            self.tx_slots
        } else {
            0
        }
    }

    /// Frames the port's rings hold.
    fn frames(&self) -> u32 {
        self.socks * (self.rx_frames() + self.tx_frames())
    }

    /// Bytes of the `netmap_if` and the ring headers and slots.
    fn header_len(&self) -> usize {
        let rings = self.has_rx as usize * ring_bytes(self.rx_slots)
            + self.has_tx as usize * ring_bytes(self.tx_slots);
        kregister::if_len(self.pairs).next_multiple_of(RING_ALIGN) + rings * self.socks as usize
    }

    /// Offsets from the `netmap_if` of socket `b`'s RX ring header, then
    /// its TX ring header.
    fn ring_offsets(&self, b: u32) -> (usize, usize) {
        let rx = if self.has_rx { ring_bytes(self.rx_slots) } else { 0 };
        let tx = if self.has_tx { ring_bytes(self.tx_slots) } else { 0 };
        let start = kregister::if_len(self.pairs).next_multiple_of(RING_ALIGN) + b as usize * (rx + tx);
        (start, start + rx)
    }
}

impl Control for AfXdpFd {
    fn register(&mut self, spec: &PortSpec, req: &mut nmreq_register) -> io::Result<()> {
        kregister::refuse_options(spec)?;
        let sel = Selection::check(req, self.port.is_some())?;
        let name = spec.nr_name.as_str();
        let ifindex = if_index(name)? as u32;
        let pairs = rx_queues(name)?.min(prog::MAP_ENTRIES);
        // Host rings, pipes, the NULL mode: netmap only.
        let bound = sel.rings(pairs, libc::EOPNOTSUPP)?;
        let (mtu, _) = if_mtu(name)?;
        let frame = frame_size(mtu).ok_or_else(|| errno(libc::EMSGSIZE))?;
        let layout = Layout {
            rx_slots: slots(req.nr_rx_slots),
            tx_slots: slots(req.nr_tx_slots),
            has_rx: sel.rx,
            has_tx: sel.tx,
            pairs,
            socks: bound.len() as u32,
        };
        let pool = match spec.mem_id {
            0 => Pool::private(layout.header_len(), layout.frames(), frame)?,
            id => Pool::shared(id, frame)?,
        };
        let lease = Lease::take(pool, layout.header_len(), layout.frames())?;
        let (attach_modes, mut bind_mode) = modes(self.mode);
        // Only a port that receives needs the program.
        let attach = match layout.has_rx {
            true => Some(prog::attach(ifindex, attach_modes)?),
            false => None,
        };
        if attach.as_ref().is_some_and(|a| a.mode == Attach::Generic) {
            bind_mode = XDP_COPY;
        }
        let mut socks: Vec<Sock> = Vec::with_capacity(bound.len());
        let mut frames = lease.frames.clone().into_iter();
        for (b, queue) in bound.clone().enumerate() {
            let first = socks.first().map(|s| s.fd.as_raw_fd() as u32);
            let mine = Frames {
                rx: frames.by_ref().take(layout.rx_frames() as usize).collect(),
                tx: frames.by_ref().take(layout.tx_frames() as usize).collect(),
            };
            let s = open_sock(
                &lease,
                &layout,
                b as u32,
                queue,
                ifindex,
                first,
                bind_mode,
                attach.as_deref(),
                mine,
            )?;
            socks.push(s);
        }
        let zero_copy = socks.first().is_some_and(|s| {
            getsockopt::<u32>(s.fd.as_fd(), XDP_OPTIONS).is_ok_and(|o| o & XDP_OPTIONS_ZEROCOPY != 0)
        });
        write_if(&lease, &layout, name, &socks, bound);
        let events = event_set(&socks)?;
        reply(req, &layout, &lease);
        let pool = &lease.pool;
        self.port = Some(Port {
            socks,
            bufs: pool.bufs(),
            region: Arc::clone(&pool.region),
            events,
            attach,
            nbufs: pool.nbufs,
            frame,
            max_len: frame.min((mtu as usize).saturating_add(ETH_VLAN)),
            zero_copy,
            txpoll: req.nr_flags & NR_NO_TX_POLL == 0,
            lease,
        });
        Ok(())
    }

    /// AF_XDP knows only REGISTER.
    fn port_info(
        &mut self,
        _spec: &PortSpec,
        version: u16,
        _info: &mut nmreq_port_info_get,
    ) -> io::Result<()> {
        kregister::check_version(version)?;
        Err(errno(libc::EOPNOTSUPP))
    }

    /// AF_XDP knows only REGISTER: a port's region exists only while it is
    /// open, and is not laid out in netmap's three pools.
    fn pools_info(&mut self, _spec: &PortSpec, _info: &mut nmreq_pools_info) -> io::Result<()> {
        Err(errno(libc::EOPNOTSUPP))
    }

    fn mmap(&mut self, len: usize) -> io::Result<Mapping> {
        let port = self.port.as_ref().ok_or_else(|| errno(libc::EINVAL))?;
        afpacket::Region::mapping(&port.region, len)
    }

    fn into_port(self: Box<Self>) -> Box<dyn PortFd> {
        self
    }
}

/// The frames a socket's rings start with, as netmap buffer indices: one
/// per RX slot (they go to the fill ring) and one per TX slot.
struct Frames {
    rx: Vec<u32>,
    tx: Vec<u32>,
}

/// Socket `b` of the port, on queue `queue`: its four rings, the UMEM
/// (the pool's frames, registered by the first socket, shared by the
/// others), bound to the interface and put in the program's map; its netmap
/// rings filled in with `frames`. `first` is the descriptor of the port's
/// first socket, which registered the UMEM, if this is not it.
#[allow(clippy::too_many_arguments)]
fn open_sock(
    lease: &Lease,
    layout: &Layout,
    b: u32,
    queue: u32,
    ifindex: u32,
    first: Option<u32>,
    bind_mode: u16,
    attach: Option<&Attachment>,
    frames: Frames,
) -> io::Result<Sock> {
    let pool = &lease.pool;
    let region = &pool.region;
    let fd = sys::xdp_socket()?;
    let s = fd.as_fd();
    if first.is_none() {
        let reg = XdpUmemReg {
            addr: pool.bufs().as_ptr() as u64,
            len: (pool.nbufs as usize * pool.frame) as u64,
            chunk_size: pool.frame as u32,
            ..XdpUmemReg::default()
        };
        setsockopt(s, XDP_UMEM_REG, &reg)?;
    }
    // Every socket has its own fill and completion rings, even on a shared
    // UMEM (each queue has its own buffer pool).
    setsockopt(s, XDP_UMEM_FILL_RING, &(layout.rx_slots as c_int))?;
    setsockopt(s, XDP_UMEM_COMPLETION_RING, &(layout.tx_slots as c_int))?;
    if layout.has_rx {
        setsockopt(s, XDP_RX_RING, &(layout.rx_slots as c_int))?;
    }
    if layout.has_tx {
        setsockopt(s, XDP_TX_RING, &(layout.tx_slots as c_int))?;
        // More frames per `sendto` in copy mode, where the kernel has the
        // option; older kernels send 32 a call (ENOPROTOOPT here).
        let _ = setsockopt(s, XDP_MAX_TX_SKB_BUDGET, &TX_BUDGET.min(layout.tx_slots));
    }
    let off: XdpMmapOffsets = getsockopt(s, XDP_MMAP_OFFSETS)?;
    let (rx_off, tx_off) = layout.ring_offsets(b);
    let view = |off: usize, n: u32| RingView {
        ring: region.ptr(lease.header + off),
        n,
        _region: Arc::clone(region),
    };
    let rx = match layout.has_rx {
        true => Some(RxState {
            v: view(rx_off, layout.rx_slots),
            fill: XskRing::map(s, &off.fr, layout.rx_slots, XDP_UMEM_PGOFF_FILL_RING)?,
            rx: XskRing::map(s, &off.rx, layout.rx_slots, XDP_PGOFF_RX_RING)?,
            hwcur: Cell::new(0),
            hwtail: Cell::new(0),
            given: frames.rx.iter().map(|&f| Cell::new(f)).collect(),
        }),
        false => None,
    };
    let tx = match layout.has_tx {
        true => Some(TxState {
            v: view(tx_off, layout.tx_slots),
            tx: XskRing::map(s, &off.tx, layout.tx_slots, XDP_PGOFF_TX_RING)?,
            comp: XskRing::map(s, &off.cr, layout.tx_slots, XDP_UMEM_PGOFF_COMPLETION_RING)?,
            hwcur: Cell::new(0),
            hwtail: Cell::new(layout.tx_slots - 1),
            free: RefCell::new(VecDeque::with_capacity(layout.tx_slots as usize)),
            given: frames.tx.iter().map(|&f| Cell::new(f)).collect(),
        }),
        false => None,
    };
    let sock = Sock { fd, rx, tx };
    init_rings(&sock, pool, queue as u16, &frames);
    let addr = SockaddrXdp {
        sxdp_family: AF_XDP as u16,
        sxdp_flags: match first {
            Some(_) => XDP_SHARED_UMEM,
            None => bind_mode | XDP_USE_NEED_WAKEUP,
        },
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue,
        sxdp_shared_umem_fd: first.unwrap_or(0),
    };
    bind_retrying(sock.fd.as_fd(), &addr)?;
    if let (Some(a), true) = (attach, layout.has_rx) {
        a.insert(queue, sock.fd.as_fd())?;
    }
    Ok(sock)
}

/// How long a bind waits for a queue that a closed socket still holds: the
/// kernel lets go of a socket's queue some milliseconds after the socket
/// closes (its buffer pool is freed by a work queue).
const BIND_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// `bind`, again while the queue is busy, for at most [`BIND_PATIENCE`]
/// (a loaded machine may take hundreds of milliseconds):
/// a queue of a socket that just closed frees itself soon; one that a live
/// socket binds stays `EBUSY`.
fn bind_retrying(fd: std::os::fd::BorrowedFd<'_>, addr: &SockaddrXdp) -> io::Result<()> {
    let t0 = std::time::Instant::now();
    loop {
        match bind(fd, addr) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && t0.elapsed() < BIND_PATIENCE => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

/// Fills the netmap ring headers and slots of `sock` with `frames`, gives
/// every RX frame to the fill ring and every TX frame but one to a TX slot
/// (netmap keeps one slot of a ring empty).
fn init_rings(sock: &Sock, pool: &Pool, ringid: u16, frames: &Frames) {
    // Buffer 0 of the netmap view: `RESERVED_BUFS` frames before frame 0.
    let bufs = pool.bufs().as_ptr() as i64 - (RESERVED_BUFS as usize * pool.frame) as i64;
    let mask = (pool.frame - 1) as u64;
    let header = |v: &RingView, dir: u16| {
        let r = v.ring.as_ptr().cast::<netmap_ring>();
        // SAFETY: the header lies in the port's part of the pool's header
        // area (RingView invariant), which no other port uses; the user
        // learns of it only when REGISTER returns, so plain writes race with
        // nothing.
        unsafe {
            ptr::addr_of_mut!((*r).buf_ofs).write(bufs - r as i64);
            ptr::addr_of_mut!((*r).num_slots).write(v.n);
            ptr::addr_of_mut!((*r).nr_buf_size).write(pool.frame as u32);
            ptr::addr_of_mut!((*r).ringid).write(ringid);
            ptr::addr_of_mut!((*r).dir).write(dir);
            ptr::addr_of_mut!((*r).offset_mask).write(mask);
        }
    };
    let slot = |buf_idx| Slot {
        buf_idx,
        len: 0,
        flags: 0,
        ptr: 0,
    };
    if let Some(tx) = &sock.tx {
        header(&tx.v, 0);
        let n = tx.v.n;
        tx.v.shared().reset(0, n - 1);
        for k in 0..n - 1 {
            tx.v.shared().store(k, slot(frames.tx[k as usize]));
        }
        tx.free.borrow_mut().push_back(frames.tx[n as usize - 1]);
    }
    if let Some(rx) = &sock.rx {
        header(&rx.v, 1);
        rx.v.shared().reset(0, 0);
        for k in 0..rx.v.n {
            let b = frames.rx[k as usize];
            rx.v.shared().store(k, slot(b));
            rx.fill.put(k, u64::from(b - RESERVED_BUFS) * pool.frame as u64);
        }
        rx.fill.submit(rx.v.n);
    }
}

/// The epoll set handed to event loops when the port has several sockets
/// (one socket's own descriptor serves otherwise).
fn event_set(socks: &[Sock]) -> io::Result<Option<OwnedFd>> {
    if socks.len() <= 1 {
        return Ok(None);
    }
    let ep = epoll_create()?;
    for s in socks {
        epoll_ctl(ep.as_fd(), libc::EPOLL_CTL_ADD, s.fd.as_fd())?;
    }
    Ok(Some(ep))
}

/// The kernel's answer to REGISTER: the region's size and where the
/// port's `netmap_if` is in it, the rings' shape, the memory id.
fn reply(req: &mut nmreq_register, layout: &Layout, lease: &Lease) {
    req.nr_offset = lease.header as u64;
    req.nr_memsize = lease.pool.region.len as u64;
    req.nr_tx_slots = layout.tx_slots;
    req.nr_rx_slots = layout.rx_slots;
    req.nr_tx_rings = layout.pairs as u16;
    req.nr_rx_rings = layout.pairs as u16;
    req.nr_host_tx_rings = 0;
    req.nr_host_rx_rings = 0;
    req.nr_mem_id = lease.pool.mem_id.0;
    req.nr_extra_bufs = 0;
}

/// Fills the port's `netmap_if`, at the start of its part of the header
/// area.
fn write_if(lease: &Lease, layout: &Layout, name: &str, socks: &[Sock], bound: Range<u32>) {
    let nif = lease.pool.region.ptr(lease.header);
    let base = nif.as_ptr() as isize;
    let ofs = |pair: u32, ring: Option<NonNull<u8>>| Some((pair, ring?.as_ptr() as isize - base));
    let tx = (bound.clone().zip(socks)).filter_map(|(i, s)| ofs(i, s.tx.as_ref().map(|r| r.v.ring)));
    let rx = (bound.zip(socks)).filter_map(|(i, s)| ofs(i, s.rx.as_ref().map(|r| r.v.ring)));
    // SAFETY: the netmap_if (`if_len(pairs)` bytes) starts the port's part
    // of the header area, 256-aligned, which no other port uses; the user
    // sees it only after REGISTER; the bound ring pairs are below `pairs`.
    unsafe { kregister::write_if(nif.cast(), name, layout.pairs, tx, rx) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_hold_the_mtu_and_the_headroom() {
        assert_eq!(frame_size(1500), Some(2048));
        assert_eq!(frame_size(1774), Some(2048));
        assert_eq!(frame_size(1775), Some(4096));
        assert_eq!(frame_size(max_mtu() as u32), Some(4096));
        assert_eq!(frame_size(max_mtu() as u32 + 1), None);
        assert_eq!(frame_size(u32::MAX), None);
    }

    #[test]
    fn slot_counts_are_powers_of_two_in_range() {
        assert_eq!(slots(0), DEFAULT_SLOTS);
        assert_eq!(slots(1), MIN_SLOTS);
        assert_eq!(slots(1000), 1024);
        assert_eq!(slots(u32::MAX), MAX_SLOTS);
    }

    #[test]
    fn the_rings_follow_the_netmap_if() {
        let l = Layout {
            rx_slots: 512,
            tx_slots: 256,
            has_rx: true,
            has_tx: true,
            pairs: 4,
            socks: 2,
        };
        assert_eq!(l.frames(), 2 * 768);
        let (rx0, tx0) = l.ring_offsets(0);
        let (rx1, tx1) = l.ring_offsets(1);
        assert!(rx0 >= kregister::if_len(4) && tx0 == rx0 + ring_bytes(512) && rx1 == tx0 + ring_bytes(256));
        assert_eq!(tx1 + ring_bytes(256), l.header_len());
    }
}
