//! `NIOCCTRL(REGISTER)`: the sockets, the region and its rings, the fanout
//! group, and the reply.

use std::cell::Cell;
use std::ffi::c_int;
use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use super::group::{join_fanout, MemId, RingClaim};
use super::iface::{if_index, ifioctl, is_physical, vnet_tx_supported};
use super::layout::{Layout, Region, MAX_RINGS};
use super::rings::{Port, RingView, RxState, Sock, TxState};
use super::sys::{
    bind, epoll_ctl, packet_socket, page_size, query_socket, setsockopt, PacketMreq, ETH_P_ALL, IFNAMSIZ,
    PACKET_ADD_MEMBERSHIP, PACKET_IGNORE_OUTGOING, PACKET_LOSS, PACKET_MR_PROMISC, PACKET_QDISC_BYPASS,
    PACKET_RX_RING, PACKET_TX_RING, PACKET_VERSION, PACKET_VNET_HDR, SIOCGIFMTU, SOL_PACKET, TPACKET_V2,
};
use super::AfPacketFd;
use crate::backend::errno;
use crate::backend::kring::Slot;
use crate::backend::sys::cvt;
use crate::ffi::{
    netmap_if, netmap_ring, nmreq_register, NETMAP_API, NR_EXCLUSIVE, NR_MONITOR_RX, NR_MONITOR_TX,
    NR_NO_TX_POLL, NR_REG_ALL_NIC, NR_REG_DEFAULT, NR_REG_ONE_NIC, NR_RX_RINGS_ONLY, NR_TX_RINGS_ONLY,
    NR_ZCOPY_MON,
};

/// On a physical NIC, packets up to this size are copied into the skb (a
/// small copy costs less than mapping a page fragment for DMA); larger ones
/// leave from the ring's pages without a copy.
const PHYS_LINEAR_MAX: usize = 256;

impl AfPacketFd {
    pub(super) fn register(&mut self, name: &str, req: &mut nmreq_register) -> io::Result<()> {
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
