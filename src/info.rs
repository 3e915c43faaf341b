//! What a port is made of, asked without binding its rings: netmap's
//! `NETMAP_REQ_PORT_INFO_GET` and `NETMAP_REQ_POOLS_INFO_GET`.
//!
//! [`port_info`] says how many rings of how many slots a port has and in
//! which memory region; [`pools_info`] how that region is laid out. Both
//! open a control handle of their own, issue one request on it and close
//! it: no ring is bound, so they work on a port that another process has
//! open, and never make a port [`Busy`](crate::Error::Busy). On a port that
//! is open here, [`Netmap::port_info`](crate::Netmap::port_info) and
//! [`Netmap::pools_info`](crate::Netmap::pools_info) say the same.
//!
//! Which backend answers, for a name, is the one
//! [`NetmapBuilder::build`](crate::NetmapBuilder::build) would choose with no
//! fallback:
//!
//! | backend | who answers |
//! |---|---|
//! | kernel (`/dev/netmap`) | the module, on a fresh `/dev/netmap` descriptor |
//! | libnetmap over the kernel | the module, on a fresh `/dev/netmap` descriptor (libnetmap has no entry point for these requests) |
//! | embedded (`emu:`) | the embedded kernel, for a pipe or loopback port that is open (a name no port is open under is [`Error::InterfaceNotFound`]) |
//! | AF_PACKET, or a libnetmap with its own `ioctl` | nobody: [`Error::Unsupported`]; open the port and ask [`Netmap::port_info`](crate::Netmap::port_info) |
//!
//! As for the module's own answer: the name's ring suffix (`-N`, `^`, `/T`)
//! does not matter, the port as a whole is described; the name's `@conf`
//! shape and memory id are passed along, as the module uses them when it
//! has to make the port to answer (a pipe whose ends are not open yet).
//!
//! ```
//! use netmap_rs::{info, NetmapBuilder};
//!
//! # fn main() -> netmap_rs::Result<()> {
//! let port = NetmapBuilder::new("emu:infodoc{1").num_slots(256).build()?;
//! let shape = info::port_info("emu:infodoc}1")?;
//! assert_eq!((shape.tx_slots, shape.rx_slots), port.num_slots());
//! assert_eq!(shape.mem_id, port.mem_id());
//!
//! let pools = info::pools_info("emu:infodoc{1")?;
//! assert_eq!(pools.memsize, shape.memsize);
//! assert!(pools.buf_pool.offset > pools.ring_pool.offset);
//! # Ok(())
//! # }
//! ```

use crate::backend::{kernel, select};
use crate::error::{BackendKind, Error, Result};
use crate::ffi::{nmreq_pools_info, nmreq_port_info_get};
use crate::spec;

/// A port's shape and memory: the reply to `NETMAP_REQ_PORT_INFO_GET`.
///
/// `PortInfo` is `Send` and `Sync`: it is plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PortInfo {
    /// Bytes of the port's memory region (`nr_memsize`): what a REGISTER
    /// would map.
    pub memsize: u64,
    /// Slots in each TX ring (`nr_tx_slots`).
    pub tx_slots: u32,
    /// Slots in each RX ring (`nr_rx_slots`).
    pub rx_slots: u32,
    /// Hardware TX rings (`nr_tx_rings`).
    pub tx_rings: u16,
    /// Hardware RX rings (`nr_rx_rings`).
    pub rx_rings: u16,
    /// Host-stack TX rings (`nr_host_tx_rings`; 0 for pipes).
    pub host_tx_rings: u16,
    /// Host-stack RX rings (`nr_host_rx_rings`; 0 for pipes).
    pub host_rx_rings: u16,
    /// The id of the port's memory region (`nr_mem_id`): ports whose ids
    /// (and backends) agree share buffers.
    pub mem_id: u16,
    /// The backend that answered.
    pub backend: BackendKind,
}

impl PortInfo {
    fn from_reply(r: &nmreq_port_info_get, backend: BackendKind) -> PortInfo {
        PortInfo {
            memsize: r.nr_memsize,
            tx_slots: r.nr_tx_slots,
            rx_slots: r.nr_rx_slots,
            tx_rings: r.nr_tx_rings,
            rx_rings: r.nr_rx_rings,
            host_tx_rings: r.nr_host_tx_rings,
            host_rx_rings: r.nr_host_rx_rings,
            mem_id: r.nr_mem_id,
            backend,
        }
    }
}

/// One pool of a memory region: `count` objects of `size` bytes each,
/// from byte `offset` of the region.
///
/// `Pool` is `Send` and `Sync`: it is plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Pool {
    /// Where the pool starts, in bytes from the region's start.
    pub offset: u64,
    /// How many objects it holds (`objtotal`).
    pub count: u32,
    /// Bytes per object (`objsize`).
    pub size: u32,
}

/// The layout of a memory region: the reply to
/// `NETMAP_REQ_POOLS_INFO_GET`. A region holds three pools, in this order:
/// `netmap_if`s (one per bound descriptor), rings, and packet buffers.
///
/// `PoolsInfo` is `Send` and `Sync`: it is plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PoolsInfo {
    /// Bytes of the region (`nr_memsize`).
    pub memsize: u64,
    /// The region's id (`nr_mem_id`).
    pub mem_id: u16,
    /// The `netmap_if` pool (`nr_if_pool_*`), at offset 0.
    pub if_pool: Pool,
    /// The ring pool (`nr_ring_pool_*`). The embedded kernel gives a ring
    /// as many 128-byte objects as it needs, the module one object each.
    pub ring_pool: Pool,
    /// The buffer pool (`nr_buf_pool_*`): `size` is the buffer size, and
    /// `count` includes buffers 0 and 1, which are never handed out.
    pub buf_pool: Pool,
    /// The backend that answered.
    pub backend: BackendKind,
}

impl PoolsInfo {
    fn from_reply(r: &nmreq_pools_info, backend: BackendKind) -> PoolsInfo {
        PoolsInfo {
            memsize: r.nr_memsize,
            mem_id: r.nr_mem_id,
            if_pool: Pool {
                offset: r.nr_if_pool_offset,
                count: r.nr_if_pool_objtotal,
                size: r.nr_if_pool_objsize,
            },
            ring_pool: Pool {
                offset: r.nr_ring_pool_offset,
                count: r.nr_ring_pool_objtotal,
                size: r.nr_ring_pool_objsize,
            },
            buf_pool: Pool {
                offset: r.nr_buf_pool_offset,
                count: r.nr_buf_pool_objtotal,
                size: r.nr_buf_pool_objsize,
            },
            backend,
        }
    }
}

/// The shape and memory of the port `name` names, without binding a ring
/// (see the [module docs](self) for who answers).
///
/// # Errors
/// [`Error::InvalidPortSpec`] for a malformed name;
/// [`Error::Unavailable`] when no backend could open it (no netmap module:
/// the refusals say why); [`Error::InterfaceNotFound`] when the module, or
/// the embedded kernel, knows no such port; [`Error::PermissionDenied`] for
/// `/dev/netmap`'s mode; [`Error::Unsupported`] on AF_PACKET, or from a
/// module that runs native adapters only (admode 1) for an interface
/// without one; [`Error::ApiVersionMismatch`] from a module of another API.
/// The same causes give the same variants as
/// [`NetmapBuilder::build`](crate::NetmapBuilder::build).
///
/// ```
/// use netmap_rs::{info, Error};
///
/// // No pipe of that name is open in the embedded kernel.
/// let e = info::port_info("emu:nosuchpipe}1").unwrap_err();
/// assert!(matches!(e, Error::InterfaceNotFound { .. }));
/// ```
pub fn port_info(name: &str) -> Result<PortInfo> {
    let spec = spec::parse(name)?;
    let (kernel, backend) = select::info_kernel(&spec)?;
    let reply = kernel::port_info(kernel, &spec)?;
    Ok(PortInfo::from_reply(&reply, backend))
}

/// The layout of the memory region of the port `name` names, without
/// binding a ring (see the [module docs](self) for who answers). The
/// region is the one the name's `@conf:memid` names, else the port's own.
///
/// # Errors
/// As [`port_info`]'s.
///
/// ```no_run
/// // A real interface: the module answers, on a fresh /dev/netmap descriptor.
/// let pools = netmap_rs::info::pools_info("netmap:eth0")?;
/// println!("{} buffers of {} bytes", pools.buf_pool.count, pools.buf_pool.size);
/// # Ok::<(), netmap_rs::Error>(())
/// ```
pub fn pools_info(name: &str) -> Result<PoolsInfo> {
    let spec = spec::parse(name)?;
    let (kernel, backend) = select::info_kernel(&spec)?;
    let reply = kernel::pools_info(kernel, &spec, 0)?;
    Ok(PoolsInfo::from_reply(&reply, backend))
}

/// [`crate::Netmap::port_info`]: the REGISTER reply of an open port, which
/// holds the same fields as a PORT_INFO_GET reply.
pub(crate) fn of_register(reg: &crate::ffi::nmreq_register, backend: BackendKind) -> PortInfo {
    PortInfo {
        memsize: reg.nr_memsize,
        tx_slots: reg.nr_tx_slots,
        rx_slots: reg.nr_rx_slots,
        tx_rings: reg.nr_tx_rings,
        rx_rings: reg.nr_rx_rings,
        host_tx_rings: reg.nr_host_tx_rings,
        host_rx_rings: reg.nr_host_rx_rings,
        mem_id: reg.nr_mem_id,
        backend,
    }
}

/// [`crate::Netmap::pools_info`]: POOLS_INFO_GET of an open port's name,
/// in its memory region, from the kernel that holds the region.
pub(crate) fn of_open_port(
    spec: &spec::PortSpec,
    domain: crate::backend::MemDomain,
    mem_id: u16,
    backend: BackendKind,
) -> Result<PoolsInfo> {
    let Some(kernel) = select::domain_kernel(domain) else {
        return Err(Error::Unsupported {
            backend,
            what: "pools info".into(),
            hint: "its region is not netmap's: the port's own rings and slots are all there is \
                   (`Netmap::port_info`)"
                .into(),
        });
    };
    let reply = kernel::pools_info(kernel, spec, mem_id)?;
    Ok(PoolsInfo::from_reply(&reply, backend))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NetmapBuilder;

    #[test]
    fn the_embedded_kernel_answers_as_its_open_ports_report() {
        let port = NetmapBuilder::new("emu:infot{1")
            .num_slots(64)
            .num_tx_rings(3)
            .build()
            .unwrap();
        for name in ["emu:infot{1", "emu:infot}1", "emu:infot}1-2/T"] {
            let info = port_info(name).unwrap();
            assert_eq!((info.tx_slots, info.rx_slots), port.num_slots(), "{name}");
            assert_eq!((info.tx_rings, info.rx_rings), (3, 3));
            assert_eq!((info.host_tx_rings, info.host_rx_rings), (0, 0));
            assert_eq!(info.mem_id, port.mem_id());
            assert_eq!(info.backend, BackendKind::Emulated);
            assert_eq!(info, port.port_info());
        }
        let pools = pools_info("emu:infot}1").unwrap();
        assert_eq!(pools, port.pools_info().unwrap());
        assert_eq!(pools.memsize, port.port_info().memsize);
        assert_eq!(pools.mem_id, port.mem_id());
        let (i, r, b) = (pools.if_pool, pools.ring_pool, pools.buf_pool);
        assert_eq!(i.offset, 0);
        assert_eq!(r.offset, u64::from(i.count) * u64::from(i.size));
        assert!(b.offset >= r.offset + u64::from(r.count) * u64::from(r.size));
        assert!(b.offset + u64::from(b.count) * u64::from(b.size) <= pools.memsize);
        assert_eq!(b.size, 2048);
        // Another parent: another region.
        let other = NetmapBuilder::new("emu:infou{1").build().unwrap();
        assert_ne!(pools_info("emu:infou{1").unwrap().mem_id, pools.mem_id);
        drop(other);
    }

    #[test]
    fn errors_are_the_builds() {
        let e = port_info("emu:infonone}1").unwrap_err();
        assert!(matches!(e, Error::InterfaceNotFound { .. }), "{e}");
        let e = pools_info("emu:infonone{1").unwrap_err();
        assert!(matches!(e, Error::InterfaceNotFound { .. }), "{e}");
        let e = port_info("netmap:eth0-").unwrap_err();
        assert!(matches!(e, Error::InvalidPortSpec { .. }), "{e}");
        // AF_PACKET: typed, and it says what to do instead.
        for e in [
            port_info("afpacket:lo").unwrap_err(),
            pools_info("afpacket:lo").unwrap_err(),
        ] {
            let Error::Unsupported { backend, hint, .. } = &e else {
                panic!("{e:?}")
            };
            assert_eq!(*backend, BackendKind::AfPacket);
            assert!(hint.contains("Netmap::port_info"), "{hint}");
        }
    }

    #[test]
    fn without_netmap_a_real_interface_is_unavailable_as_at_build() {
        if select::kernel_status().is_ok() || crate::backend::libnetmap::load().is_ok() {
            return;
        }
        let build = NetmapBuilder::new("netmap:lo").build().unwrap_err();
        let info = port_info("netmap:lo").unwrap_err();
        assert!(matches!(info, Error::Unavailable { .. }), "{info}");
        assert_eq!(std::mem::discriminant(&info), std::mem::discriminant(&build));
        assert!(matches!(pools_info("lo").unwrap_err(), Error::Unavailable { .. }));
    }
}
