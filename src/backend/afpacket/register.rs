//! REGISTER (the [`Control`] impl): the sockets, the region and its rings,
//! the fanout group, and the reply.

use std::cell::Cell;
use std::ffi::c_int;
use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use super::group::{join_fanout, MemId, RingClaim};
use super::iface::{if_index, probe, vnet_tx_supported};
use super::layout::{Layout, Region, MAX_RINGS};
use super::rings::{Port, RingView, RxState, Sock, TxState};
use super::sys::{
    bind, epoll_create, epoll_ctl, packet_socket, page_size, setsockopt, PacketMreq, ETH_P_ALL,
    PACKET_ADD_MEMBERSHIP, PACKET_IGNORE_OUTGOING, PACKET_LOSS, PACKET_MR_PROMISC, PACKET_QDISC_BYPASS,
    PACKET_RX_RING, PACKET_TX_RING, PACKET_VERSION, PACKET_VNET_HDR, SOL_PACKET, TPACKET_V2,
};
use super::AfPacketFd;
use crate::backend::kregister::{self, Selection};
use crate::backend::{errno, Control, Mapping, PortFd};
use crate::ffi::{
    netmap_ring, nmreq_pools_info, nmreq_port_info_get, nmreq_register, NR_EXCLUSIVE, NR_NO_TX_POLL,
};
use crate::ring::RESERVED_BUFS;
use crate::spec::PortSpec;

/// On a physical NIC, packets up to this size are copied into the skb (a
/// small copy costs less than mapping a page fragment for DMA); larger ones
/// leave from the ring's pages without a copy.
const PHYS_LINEAR_MAX: usize = 256;

/// What a REGISTER request asks for, checked.
#[derive(Debug)]
struct Request {
    /// The directions, and the ring selection.
    sel: Selection,
    /// Ring pairs of the port.
    pairs: u32,
    /// The ring pairs this handle binds, one socket each.
    bound: Range<u32>,
}

impl Request {
    /// Reads `req` on a handle `registered` already or not: the
    /// directions, how many ring pairs, which of them.
    fn parse(req: &nmreq_register, registered: bool) -> io::Result<Request> {
        let sel = Selection::check(req, registered)?;
        let pairs = u32::from(req.nr_tx_rings.max(req.nr_rx_rings)).max(1);
        if pairs > MAX_RINGS {
            return Err(errno(libc::EINVAL));
        }
        // Host rings, pipes, the NULL mode: netmap only.
        let bound = sel.rings(pairs, libc::EOPNOTSUPP)?;
        Ok(Request { sel, pairs, bound })
    }
}

impl Control for AfPacketFd {
    fn register(&mut self, spec: &PortSpec, req: &mut nmreq_register) -> io::Result<()> {
        kregister::refuse_options(spec)?;
        let r = Request::parse(req, self.port.is_some())?;
        let (has_rx, has_tx) = (r.sel.rx, r.sel.tx);
        let name = spec.nr_name.as_str();
        let ifindex = if_index(name)?;
        let (tx, rx) = r.sel.per_dir(r.bound.clone());
        let claim = RingClaim::take(ifindex, tx, rx, req.nr_flags & NR_EXCLUSIVE != 0)?;
        let (mtu, physical) = probe(name)?;
        let vnet = has_tx && vnet_tx_supported();
        let layout = Layout::new(
            mtu,
            page_size(),
            req,
            has_rx,
            has_tx,
            vnet,
            r.pairs,
            r.bound.len() as u32,
        );
        let region = Arc::new(Region::reserve(layout.total())?);
        let mem_id = MemId::new()?;
        let socks = (r.bound.clone().enumerate())
            .map(|(b, pair)| open_pair(&region, &layout, b as u32, pair, ifindex))
            .collect::<io::Result<Vec<Sock>>>()?;
        write_if(&region, &layout, name, &socks, r.bound.clone());

        let fanout = if has_rx && r.pairs > 1 {
            Some(join_fanout(&socks, ifindex, r.pairs, r.bound.clone())?)
        } else {
            None
        };
        if self.promisc {
            promisc(&socks[0], ifindex)?;
        }
        let events = event_set(&socks)?;
        reply(req, &layout, r.pairs, &mem_id);
        self.port = Some(Port {
            socks,
            bufs: region.ptr(layout.head_len),
            region,
            events,
            _rings: claim,
            _fanout: fanout,
            _mem_id: mem_id,
            nbufs: (layout.socks as usize * layout.sock_len / layout.frame) as u32,
            frame: layout.frame,
            tx_off: layout.tx_off(),
            max_len: layout.max_tx_len(mtu),
            linear_max: vnet.then_some(if physical { PHYS_LINEAR_MAX } else { usize::MAX }),
            txpoll: req.nr_flags & NR_NO_TX_POLL == 0,
        });
        Ok(())
    }

    /// AF_PACKET knows only REGISTER.
    fn port_info(
        &mut self,
        _spec: &PortSpec,
        version: u16,
        _info: &mut nmreq_port_info_get,
    ) -> io::Result<()> {
        kregister::check_version(version)?;
        Err(errno(libc::EOPNOTSUPP))
    }

    /// AF_PACKET knows only REGISTER: a port's region exists only while it
    /// is open, and is not laid out in netmap's three pools.
    fn pools_info(&mut self, _spec: &PortSpec, _info: &mut nmreq_pools_info) -> io::Result<()> {
        Err(errno(libc::EOPNOTSUPP))
    }

    fn mmap(&mut self, len: usize) -> io::Result<Mapping> {
        let port = self.port.as_ref().ok_or_else(|| errno(libc::EINVAL))?;
        Region::mapping(&port.region, len)
    }

    fn into_port(self: Box<Self>) -> Box<dyn PortFd> {
        self
    }
}

/// Socket `b` of the port, ring pair `pair`: its rings mapped at their
/// place in the region, their headers and slots filled, and the socket
/// bound to the interface.
fn open_pair(region: &Arc<Region>, layout: &Layout, b: u32, pair: u32, ifindex: c_int) -> io::Result<Sock> {
    let fd = open_socket(layout)?;
    region.map_socket(layout.sock_offset(b), layout.sock_len, fd.as_fd())?;
    // netmap's buffer numbers: frame `f` of the region is buffer
    // `RESERVED_BUFS + f`, as netmap keeps buffers 0 and 1 out of slots.
    let (rx_first, tx_first) = layout.first_bufs(b);
    let (rx_first, tx_first) = (rx_first + RESERVED_BUFS, tx_first + RESERVED_BUFS);
    let (rx_off, tx_off) = layout.ring_offsets(b);
    let (rx_frames, tx_frames) = layout.frame_offsets(b);
    let view = |ring_off: usize, frames_off: usize, n: u32, first: u32| RingView {
        ring: region.ptr(ring_off),
        frames: region.ptr(frames_off),
        n,
        frame: layout.frame,
        first,
        _region: Arc::clone(region),
    };
    let rx = layout.has_rx.then(|| RxState {
        v: view(rx_off, rx_frames, layout.rx_slots, rx_first),
        hwcur: Cell::new(0),
        hwtail: Cell::new(0),
    });
    let tx = layout.has_tx.then(|| TxState {
        v: view(tx_off, tx_frames, layout.tx_slots, tx_first),
        hwcur: Cell::new(0),
        pending: Cell::new(0),
        unsent: Cell::new(None),
    });
    let sock = Sock { fd, rx, tx };
    init_rings(&sock, layout, region, pair as u16);
    let protocol = if layout.has_rx { ETH_P_ALL } else { 0 };
    bind(sock.fd.as_fd(), ifindex, protocol)?;
    Ok(sock)
}

/// Takes a promiscuous membership of the interface on `sock`; the kernel
/// drops it when the socket closes.
fn promisc(sock: &Sock, ifindex: c_int) -> io::Result<()> {
    let mreq = PacketMreq {
        mr_ifindex: ifindex,
        mr_type: PACKET_MR_PROMISC,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    setsockopt(sock.fd.as_fd(), SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq)
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

/// The kernel's answer to REGISTER: the region's size, the rings' shape,
/// the memory id.
fn reply(req: &mut nmreq_register, layout: &Layout, pairs: u32, mem_id: &MemId) {
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

/// Fills the ring headers and slots of `sock`.
fn init_rings(sock: &Sock, layout: &Layout, region: &Region, ringid: u16) {
    // Buffer 0 of the netmap view: `RESERVED_BUFS` frames before frame 0.
    let bufs = region.at(layout.head_len) as i64 - (RESERVED_BUFS as usize * layout.frame) as i64;
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
            v.set_own(k, 0, 0, off);
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
    let nif = region.base.as_ptr() as isize;
    let ofs = |pair: u32, ring: Option<NonNull<u8>>| Some((pair, ring?.as_ptr() as isize - nif));
    let tx = (bound.clone().zip(socks)).filter_map(|(i, s)| ofs(i, s.tx.as_ref().map(|r| r.v.ring)));
    let rx = (bound.zip(socks)).filter_map(|(i, s)| ofs(i, s.rx.as_ref().map(|r| r.v.ring)));
    // SAFETY: the netmap_if (`nif_len` bytes, `if_len(pairs)`) lies at the
    // start of the anonymous part of the region, page-aligned; the user sees
    // it only after REGISTER; the bound ring pairs are below `pairs`.
    unsafe { kregister::write_if(region.base.cast(), name, layout.pairs, tx, rx) }
}
