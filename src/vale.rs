//! VALE switch control: what netmap's `vale-ctl` does, with typed errors.
//!
//! A VALE switch (`vale0`, `valeA`, ...) is a software Ethernet switch in
//! the netmap module. It comes into being with its first port and goes away
//! with its last; its ports are
//!
//! * *ephemeral* ports, made when a process opens `vale0:p1` with
//!   [`NetmapBuilder`](crate::NetmapBuilder) and gone when it closes them;
//! * *persistent* ports, made by [`new_port`] (an interface of their own,
//!   seen by `ip link`, until [`delete_port`]), opened by that name
//!   (`netmap:NAME`) and attached to a switch by [`attach`]
//!   (`vale0:NAME`). The module detaches one from its switch when a port
//!   that opened it closes: open it before attaching it;
//! * NICs, [`attach`]ed (`vale0:eth0`), with their host stack
//!   (`vale0:eth0^` in the list) when asked for, until [`detach`].
//!
//! | `vale-ctl` | here |
//! |---|---|
//! | `-a vale0:eth0` | [`attach`]`("vale0:eth0", false)` |
//! | `-h vale0:eth0` | [`attach`]`("vale0:eth0", true)` (the host stack too) |
//! | `-a ... -C 1024,1024,2,2 -m 3` | [`attach_with`] and a [`PortConf`] |
//! | `-d vale0:eth0` | [`detach`] |
//! | `-n p0`, with `-C`, `-m` | [`new_port`] |
//! | `-r p0` | [`delete_port`] |
//! | (no flag) | [`list_all`] |
//! | `-l vale0:p0` | [`lookup`]; [`list`] gives one switch's ports |
//! | `-p vale0:eth0 -C 0,1` | [`polling_enable`] with a [`Polling`] |
//! | `-P vale0:eth0` | [`polling_disable`] |
//!
//! # Where the requests go
//!
//! Every call opens a fresh `/dev/netmap` descriptor and sends one
//! `NIOCCTRL` request (a listing, one per port), as `vale-ctl` does; the
//! switches are the module's, so nothing is undone when the descriptor
//! closes. libnetmap has no entry points for these requests (`vale-ctl`
//! itself issues them on `/dev/netmap`), so they go there whether or not
//! libnetmap is loaded. The embedded kernel (`emu:` names) has no VALE
//! switch yet: its names get [`Error::Unsupported`].
//!
//! # Names
//!
//! Names follow the crate's [port-name grammar](crate::spec), without a ring
//! suffix, flags or options: a switch port is `valeX:NAME` (or
//! `netmap:valeX:NAME`), the switch's name at most 15 bytes and `NAME` at
//! most 15 (`IFNAMSIZ` less its NUL); a persistent port is an interface
//! name of at most 15 bytes, without the `valeX:` prefix and without `:`.
//! A name that breaks these rules is [`Error::InvalidPortSpec`] before any
//! request is made.
//!
//! # Errors
//!
//! The kernel's answers map to the crate's [`Error`] as follows; every
//! message says what to do.
//!
//! | cause | variant |
//! |---|---|
//! | no `/dev/netmap` (the module is not loaded) | [`Error::Unavailable`] |
//! | no access to `/dev/netmap`, or a switch that refuses users | [`Error::PermissionDenied`] |
//! | no such NIC, persistent port, switch or switch port | [`Error::InterfaceNotFound`] |
//! | attached already; a persistent port's name taken | [`Error::AlreadyExists`] |
//! | the NIC or port is open in a process, attached elsewhere, or polled | [`Error::InUse`] |
//! | polling a port that is not a NIC | [`Error::Unsupported`] |
//! | an `emu:` name | [`Error::Unsupported`] |
//! | a module of another API version | [`Error::ApiVersionMismatch`] |
//! | anything else the kernel refuses (a full switch, an unknown memory id, CPUs out of range, a module built without VALE) | [`Error::Io`], saying which |
//!
//! # Example
//!
//! ```no_run
//! use netmap_rs::vale::{self, PortConf};
//!
//! # fn main() -> Result<(), netmap_rs::Error> {
//! // A persistent port, on switch vale0 with a NIC and its host stack.
//! let mut conf = PortConf::default();
//! conf.tx_rings = 2;
//! conf.rx_rings = 2;
//! let got = vale::new_port("p0", &conf)?;
//! println!("p0: {} TX rings of {} slots", got.tx_rings, got.tx_slots);
//! vale::attach("vale0:p0", false)?;
//! vale::attach("vale0:eth0", true)?;
//! for port in vale::list("vale0")? {
//!     println!("{} bridge_idx {} port_idx {}", port.name, port.bridge_idx, port.port_idx);
//! }
//! vale::detach("vale0:eth0")?;
//! vale::detach("vale0:p0")?;
//! vale::delete_port("p0")?;
//! # Ok(())
//! # }
//! ```

use std::io;

use crate::backend::devnetmap::{DevNetmap, ValeBody, ValeCtl};
use crate::backend::emu::control as emu_control;
use crate::backend::kernel::{self, ApiVersion};
use crate::backend::select::kernel_refusal;
use crate::error::{BackendKind, Error, Name, Refusal, Refusals, Result};
use crate::ffi::{
    self, nmreq_vale_attach, nmreq_vale_detach, nmreq_vale_list, nmreq_vale_newif, nmreq_vale_polling,
    NETMAP_API, NETMAP_POLLING_MODE_MULTI_CPU, NETMAP_POLLING_MODE_SINGLE_CPU, NM_BDG_NAME, NM_BDG_NOPORT,
    NR_REG_ALL_NIC, NR_REG_NIC_SW,
};
use crate::spec::{self, PortKind, PortSpec, RingSelect};

/// The longest switch name, and the longest name after its `:`
/// (`IFNAMSIZ` less the NUL).
const MAX_PART: usize = ffi::IFNAMSIZ - 1;

/// The most ports a listing takes from the kernel: far more than its
/// switches can hold (8 of 254 ports by default), so that a walk ends
/// whatever the kernel answers.
const MAX_LISTED: usize = 1 << 16;

/// Ring and slot counts and the memory region of a port that [`new_port`]
/// creates or [`attach_with`] attaches (`vale-ctl`'s `-C` and `-m`). 0 asks
/// for the module's default. [`new_port`] returns what the port got.
///
/// `PortConf` is `Send` and `Sync`: it is plain data.
///
/// ```
/// use netmap_rs::vale::PortConf;
///
/// let mut conf = PortConf::default();
/// conf.tx_slots = 1024;
/// conf.rx_slots = 1024;
/// assert_eq!((conf.tx_rings, conf.mem_id), (0, 0));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PortConf {
    /// TX rings.
    pub tx_rings: u16,
    /// RX rings.
    pub rx_rings: u16,
    /// Slots per TX ring.
    pub tx_slots: u32,
    /// Slots per RX ring.
    pub rx_slots: u32,
    /// The memory region's id (`nr_mem_id`).
    pub mem_id: u16,
}

/// How the switch's kernel threads poll an attached NIC
/// (`NETMAP_POLLING_MODE_*`, `vale-ctl -p NIC -C MODE,CPU[,COUNT]`).
///
/// `Polling` is `Send` and `Sync`: it is plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Polling {
    /// One thread on CPU `cpu` polls every ring
    /// (`NETMAP_POLLING_MODE_SINGLE_CPU`).
    SingleCpu {
        /// The CPU.
        cpu: u32,
    },
    /// `count` threads, one per ring: ring `first + i` on CPU `first + i`
    /// (`NETMAP_POLLING_MODE_MULTI_CPU`).
    MultiCpu {
        /// The first ring and CPU.
        first: u32,
        /// How many rings and CPUs.
        count: u32,
    },
}

/// One port of a switch, as a listing shows it (`vale-ctl`'s
/// `NAME bridge_idx B port_idx P`).
///
/// `SwitchPort` is `Send` and `Sync`: it is plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SwitchPort {
    /// The port's name: `vale0:p1`, `vale0:eth0`, `vale0:eth0^` for a NIC's
    /// host stack.
    pub name: String,
    /// The switch's index in the module.
    pub bridge_idx: u16,
    /// The port's index in the switch.
    pub port_idx: u32,
}

/// Attaches the NIC or persistent port `port` (`valeX:NAME`) to switch
/// `valeX`, creating the switch if need be; with `host`, the NIC's host
/// stack too (`vale-ctl -h`; `NR_REG_NIC_SW`), else its hardware rings
/// only (`vale-ctl -a`). Returns the port's index in the switch.
///
/// # Errors
///
/// [`Error::InterfaceNotFound`] when there is no such NIC or port,
/// [`Error::AlreadyExists`] when it is attached already,
/// [`Error::InUse`] when a process has it open or another switch has it;
/// see the [module docs](self) for the rest.
///
/// ```no_run
/// # fn main() -> Result<(), netmap_rs::Error> {
/// let index = netmap_rs::vale::attach("vale0:eth0", true)?;
/// println!("eth0 is port {index} of vale0");
/// # Ok(())
/// # }
/// ```
pub fn attach(port: &str, host: bool) -> Result<u32> {
    attach_with(port, host, &PortConf::default())
}

/// [`attach`], asking for the ring and slot counts and the memory region of
/// `conf` (`vale-ctl -a NIC -C ... -m ...`), as a register would.
///
/// ```no_run
/// use netmap_rs::vale::{self, PortConf};
///
/// # fn main() -> Result<(), netmap_rs::Error> {
/// let mut conf = PortConf::default();
/// conf.tx_slots = 2048;
/// conf.rx_slots = 2048;
/// vale::attach_with("vale0:eth0", false, &conf)?;
/// # Ok(())
/// # }
/// ```
pub fn attach_with(port: &str, host: bool, conf: &PortConf) -> Result<u32> {
    let spec = switch_port(port)?;
    let ctl = control(&spec.text)?;
    let mut body = attach_body(host, conf);
    match ctl.request(&spec.nr_name, ValeBody::Attach(&mut body)) {
        Ok(_) => Ok(body.port_index),
        // The port is on the switch already, or in use elsewhere: ask.
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(match lookup_on(&ctl, &spec) {
            Ok(_) => Error::AlreadyExists {
                name: spec.text.clone(),
            },
            Err(_) => Error::InUse {
                name: spec.text.clone(),
                reason: "a process has its rings open, or another switch has it attached".into(),
                hint: "close the ports that use it, or detach it from the other switch (`vale::list_all` \
                       shows where it is)"
                    .into(),
            },
        }),
        // A name that is no interface is taken for a new virtual port,
        // which only an open can make: EINVAL.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !interface_exists(after_colon(&spec)) => {
            Err(Error::InterfaceNotFound {
                name: after_colon(&spec).to_owned(),
            })
        }
        Err(e) => Err(failed(Op::Attach, &spec.text, e)),
    }
}

/// Detaches the NIC or persistent port `port` (`valeX:NAME`) from its
/// switch (`vale-ctl -d`), its host stack too if it was attached. Returns
/// the index the port had in the switch.
///
/// # Errors
///
/// [`Error::InterfaceNotFound`] when the switch has no such port,
/// [`Error::InUse`] when the switch polls it (see [`polling_disable`]);
/// see the [module docs](self) for the rest.
///
/// ```no_run
/// # fn main() -> Result<(), netmap_rs::Error> {
/// netmap_rs::vale::detach("vale0:eth0")?;
/// # Ok(())
/// # }
/// ```
pub fn detach(port: &str) -> Result<u32> {
    let spec = switch_port(port)?;
    let mut body = nmreq_vale_detach::default();
    control(&spec.text)?
        .request(&spec.nr_name, ValeBody::Detach(&mut body))
        .map_err(|e| failed(Op::Detach, &spec.text, e))?;
    Ok(body.port_index)
}

/// Creates the persistent VALE port `name` (`vale-ctl -n`): an interface
/// of its own, until [`delete_port`]; open it as `netmap:NAME`, attach it
/// to a switch with [`attach`]`("valeX:NAME", false)` (closing a port that
/// opened it detaches it again). Returns the counts and memory region the
/// port got.
///
/// # Errors
///
/// [`Error::AlreadyExists`] when an interface of that name exists; see the
/// [module docs](self) for the rest.
///
/// ```no_run
/// use netmap_rs::vale::{self, PortConf};
///
/// # fn main() -> Result<(), netmap_rs::Error> {
/// let got = vale::new_port("p0", &PortConf::default())?;
/// println!("{} TX rings, memory region {}", got.tx_rings, got.mem_id);
/// # Ok(())
/// # }
/// ```
pub fn new_port(name: &str, conf: &PortConf) -> Result<PortConf> {
    if let Some(port) = emu_port(name)? {
        let rings = conf.tx_rings.max(conf.rx_rings);
        let slots = conf.tx_slots.max(conf.rx_slots);
        let (rings, slots, mem_id) =
            emu_control::new_port(&port, rings, slots).map_err(|e| emu_error(name, e))?;
        return Ok(PortConf {
            tx_rings: rings,
            rx_rings: rings,
            tx_slots: slots,
            rx_slots: slots,
            mem_id,
        });
    }
    let spec = persistent_port(name)?;
    let mut body = newif_body(conf);
    match control(&spec.text)?.request(&spec.nr_name, ValeBody::NewIf(&mut body)) {
        Ok(_) => Ok(PortConf {
            tx_rings: body.nr_tx_rings,
            rx_rings: body.nr_rx_rings,
            tx_slots: body.nr_tx_slots,
            rx_slots: body.nr_rx_slots,
            mem_id: body.nr_mem_id,
        }),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Err(Error::AlreadyExists {
            name: spec.nr_name.clone(),
        }),
        Err(e) => Err(failed(Op::NewIf, &spec.text, e)),
    }
}

/// Deletes the persistent VALE port `name` (`vale-ctl -r`).
///
/// # Errors
///
/// [`Error::InterfaceNotFound`] when there is no interface of that name,
/// [`Error::InUse`] when it is attached to a switch or open in a process,
/// [`Error::Io`] when the interface is no persistent VALE port; see the
/// [module docs](self) for the rest.
///
/// ```no_run
/// # fn main() -> Result<(), netmap_rs::Error> {
/// netmap_rs::vale::delete_port("p0")?;
/// # Ok(())
/// # }
/// ```
pub fn delete_port(name: &str) -> Result<()> {
    if let Some(port) = emu_port(name)? {
        return emu_control::delete_port(&port).map_err(|e| emu_error(name, e));
    }
    let spec = persistent_port(name)?;
    control(&spec.text)?
        .request(&spec.nr_name, ValeBody::DelIf)
        .map_err(|e| failed(Op::DelIf, &spec.nr_name, e))?;
    Ok(())
}

/// The ports of switch `switch` (`vale0` or `vale0:`), in index order,
/// walked as `vale-ctl` walks them. A switch exists only while it has
/// ports, so a switch that does not exist has none: the list is empty.
///
/// ```no_run
/// # fn main() -> Result<(), netmap_rs::Error> {
/// for p in netmap_rs::vale::list("vale0")? {
///     println!("{} is port {}", p.name, p.port_idx);
/// }
/// # Ok(())
/// # }
/// ```
pub fn list(switch: &str) -> Result<Vec<SwitchPort>> {
    if let Some(sw) = switch.strip_prefix("emu:") {
        let sw = sw.strip_suffix(':').unwrap_or(sw);
        let ports = emu_control::list(sw).map_err(|e| emu_error(switch, e))?;
        return Ok(ports
            .into_iter()
            .map(|(name, port_idx)| SwitchPort {
                name: format!("emu:{sw}:{name}"),
                bridge_idx: 0,
                port_idx,
            })
            .collect());
    }
    let name = switch_name(switch)?;
    let ctl = control(switch)?;
    let mut at = nmreq_vale_list::default();
    match ctl.request(&name, ValeBody::List(&mut at)) {
        Ok(_) => walk(&ctl, at.nr_bridge_idx, Some(at.nr_bridge_idx)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(Vec::new()),
        Err(e) => Err(failed(Op::List, switch, e)),
    }
}

/// The ports of every switch, switch by switch (`vale-ctl` without
/// arguments).
///
/// ```no_run
/// # fn main() -> Result<(), netmap_rs::Error> {
/// for p in netmap_rs::vale::list_all()? {
///     println!("{} bridge_idx {} port_idx {}", p.name, p.bridge_idx, p.port_idx);
/// }
/// # Ok(())
/// # }
/// ```
pub fn list_all() -> Result<Vec<SwitchPort>> {
    walk(&control("vale")?, 0, None)
}

/// The switch and port indices of `port` (`valeX:NAME`, `vale-ctl -l`).
///
/// # Errors
///
/// [`Error::InterfaceNotFound`] when there is no such switch, or it has no
/// such port; see the [module docs](self) for the rest.
///
/// ```no_run
/// # fn main() -> Result<(), netmap_rs::Error> {
/// let p = netmap_rs::vale::lookup("vale0:eth0")?;
/// println!("bridge_idx: {}\nport_idx:   {}", p.bridge_idx, p.port_idx);
/// # Ok(())
/// # }
/// ```
pub fn lookup(port: &str) -> Result<SwitchPort> {
    if let Some(name) = emu_port(port)? {
        let port_idx = emu_control::lookup(&name).map_err(|e| emu_error(port, e))?;
        return Ok(SwitchPort {
            name: format!("emu:{name}"),
            bridge_idx: 0,
            port_idx,
        });
    }
    let spec = switch_port(port)?;
    lookup_on(&control(&spec.text)?, &spec)
}

/// Starts the switch's kernel threads polling the attached NIC `port`
/// (`valeX:NIC`, `vale-ctl -p`), in `mode`.
///
/// # Errors
///
/// [`Error::InUse`] when it is polled already, [`Error::Unsupported`] when
/// the port is not a NIC (a virtual port's rings move when its users sync
/// them), [`Error::Io`] when the kernel refuses the CPUs or rings; see the
/// [module docs](self) for the rest.
///
/// ```no_run
/// use netmap_rs::vale::{self, Polling};
///
/// # fn main() -> Result<(), netmap_rs::Error> {
/// vale::polling_enable("vale0:eth0", Polling::SingleCpu { cpu: 1 })?;
/// # Ok(())
/// # }
/// ```
pub fn polling_enable(port: &str, mode: Polling) -> Result<()> {
    let spec = switch_port(port)?;
    let mut body = polling_body(mode);
    control(&spec.text)?
        .request(&spec.nr_name, ValeBody::PollingEnable(&mut body))
        .map_err(|e| failed(Op::PollingEnable, &spec.text, e))?;
    Ok(())
}

/// Sets the length of the virtio-net header that starts every packet of
/// VALE port `port` (`PORT_HDR_SET`, what pkt-gen's `-H` does): 0 (none),
/// 10, or 12 (with `num_buffers`). A switch forwards between ports of one
/// length as they are, and between lengths by adding or taking off the
/// header, doing the checksum and segmentation work the header asks for
/// when the receiving port has none. Read and write the header with
/// [`vnet::VnetHeader`](crate::vnet::VnetHeader). The port must exist (be
/// open, or persistent).
///
/// ```no_run
/// # fn main() -> Result<(), netmap_rs::Error> {
/// let port = netmap_rs::NetmapBuilder::new("vale0:vm1").build()?;
/// netmap_rs::vale::set_header_len("vale0:vm1", 12)?;
/// assert_eq!(netmap_rs::vale::header_len("vale0:vm1")?, 12);
/// # drop(port);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`Error::Unsupported`] for another length; [`Error::InterfaceNotFound`]
/// for a port that does not exist; what [`attach`] reports otherwise.
pub fn set_header_len(port: &str, len: usize) -> Result<()> {
    let spec = switch_port(port)?;
    if ![0, crate::vnet::VNET_HDR_LEN, crate::vnet::VNET_HDR_MRG_LEN].contains(&len) {
        return Err(Error::Unsupported {
            backend: BackendKind::Kernel,
            what: format!("a virtio-net header of {len} bytes"),
            hint: "netmap takes 0 (none), 10, or 12 (with num_buffers)".into(),
        });
    }
    let mut body = ffi::nmreq_port_hdr {
        nr_hdr_len: len as u32,
        ..Default::default()
    };
    control(&spec.text)?
        .request(&spec.nr_name, ValeBody::HdrSet(&mut body))
        .map_err(|e| failed(Op::HdrSet, &spec.text, e))?;
    Ok(())
}

/// The length of the virtio-net header of port `port` (`PORT_HDR_GET`):
/// what [`set_header_len`] set, 0 for a port without one.
pub fn header_len(port: &str) -> Result<usize> {
    let spec = spec::parse(port)?;
    if spec.kind == PortKind::Emu {
        return Err(no_emu_switch(port));
    }
    let mut body = ffi::nmreq_port_hdr::default();
    control(&spec.text)?
        .request(&spec.nr_name, ValeBody::HdrGet(&mut body))
        .map_err(|e| failed(Op::HdrGet, &spec.text, e))?;
    Ok(body.nr_hdr_len as usize)
}

/// Stops the polling that [`polling_enable`] started (`vale-ctl -P`).
///
/// ```no_run
/// # fn main() -> Result<(), netmap_rs::Error> {
/// netmap_rs::vale::polling_disable("vale0:eth0")?;
/// # Ok(())
/// # }
/// ```
pub fn polling_disable(port: &str) -> Result<()> {
    let spec = switch_port(port)?;
    let mut body = nmreq_vale_polling::default();
    control(&spec.text)?
        .request(&spec.nr_name, ValeBody::PollingDisable(&mut body))
        .map_err(|e| failed(Op::PollingDisable, &spec.text, e))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------

/// The body of an attach: `vale-ctl`'s, a register of the NIC's hardware
/// rings (`NR_REG_ALL_NIC`), or of its host rings too (`NR_REG_NIC_SW`).
fn attach_body(host: bool, conf: &PortConf) -> nmreq_vale_attach {
    let mut body = nmreq_vale_attach::default();
    body.reg.nr_mode = if host { NR_REG_NIC_SW } else { NR_REG_ALL_NIC };
    body.reg.nr_tx_slots = conf.tx_slots;
    body.reg.nr_rx_slots = conf.rx_slots;
    body.reg.nr_tx_rings = conf.tx_rings;
    body.reg.nr_rx_rings = conf.rx_rings;
    body.reg.nr_mem_id = conf.mem_id;
    body
}

fn newif_body(conf: &PortConf) -> nmreq_vale_newif {
    nmreq_vale_newif {
        nr_tx_slots: conf.tx_slots,
        nr_rx_slots: conf.rx_slots,
        nr_tx_rings: conf.tx_rings,
        nr_rx_rings: conf.rx_rings,
        nr_mem_id: conf.mem_id,
        pad1: 0,
    }
}

/// The body of a polling start. The kernel wants exactly one CPU in single
/// mode (`vale-ctl -C 0,CPU` leaves the count at 0, which it refuses).
fn polling_body(mode: Polling) -> nmreq_vale_polling {
    let (nr_mode, first, count) = match mode {
        Polling::SingleCpu { cpu } => (NETMAP_POLLING_MODE_SINGLE_CPU, cpu, 1),
        Polling::MultiCpu { first, count } => (NETMAP_POLLING_MODE_MULTI_CPU, first, count),
    };
    nmreq_vale_polling {
        nr_mode,
        nr_first_cpu_id: first,
        nr_num_polling_cpus: count,
        pad1: 0,
    }
}

// ---------------------------------------------------------------------------
// Listing
// ---------------------------------------------------------------------------

/// `VALE_LIST` of `spec`'s name: its switch and port indices.
fn lookup_on(ctl: &ValeCtl, spec: &PortSpec) -> Result<SwitchPort> {
    let mut body = nmreq_vale_list::default();
    ctl.request(&spec.nr_name, ValeBody::List(&mut body))
        .map_err(|e| failed(Op::Lookup, &spec.text, e))?;
    if body.nr_port_idx == NM_BDG_NOPORT {
        return Err(Error::InterfaceNotFound {
            name: spec.text.clone(),
        });
    }
    Ok(SwitchPort {
        name: spec.nr_name.clone(),
        bridge_idx: body.nr_bridge_idx,
        port_idx: body.nr_port_idx,
    })
}

/// The walk of `vale-ctl`'s `list_all`: ask with an empty name from
/// (`bridge`, 0); the kernel answers the first port at or after, or
/// `ENOENT` past the last; go on from the next index. With `only`, stop at
/// the first port of another switch.
fn walk(ctl: &ValeCtl, bridge: u16, only: Option<u16>) -> Result<Vec<SwitchPort>> {
    let mut ports = Vec::new();
    let mut at = nmreq_vale_list {
        nr_bridge_idx: bridge,
        ..Default::default()
    };
    loop {
        let asked = (at.nr_bridge_idx, at.nr_port_idx);
        let name = match ctl.request("", ValeBody::List(&mut at)) {
            Ok(name) => name,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(ports),
            Err(e) => return Err(failed(Op::List, "vale", e)),
        };
        let found = (at.nr_bridge_idx, at.nr_port_idx);
        if found < asked || ports.len() >= MAX_LISTED {
            return Err(Error::io(
                "NIOCCTRL(VALE_LIST) walk",
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the kernel answered port {found:?} when asked from {asked:?}"),
                ),
            ));
        }
        if only.is_some_and(|b| b != at.nr_bridge_idx) {
            return Ok(ports);
        }
        ports.push(SwitchPort {
            name,
            bridge_idx: at.nr_bridge_idx,
            port_idx: at.nr_port_idx,
        });
        match at.nr_port_idx.checked_add(1) {
            Some(next) => at.nr_port_idx = next,
            None => return Ok(ports),
        }
    }
}

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

/// Where the `nr_name` of a name that parsed to `spec` starts in `name`.
fn name_start(name: &str) -> usize {
    if name.starts_with("netmap:") {
        "netmap:".len()
    } else {
        0
    }
}

/// `spec` names a port and no more: no pipe, ring suffix, flags, memory id
/// or options.
fn bare(name: &str, spec: &PortSpec, what: &str) -> Result<()> {
    let end = name_start(name) + spec.ifname.len();
    let plain = spec.pipe.is_none()
        && spec.rings == RingSelect::AllNic
        && spec.flags == 0
        && spec.mem_id == 0
        && spec.conf == spec::Conf::default()
        && spec.offset.is_none()
        && spec.extmem.is_none();
    if plain {
        return Ok(());
    }
    Err(invalid(
        name,
        end,
        format!("the end of the name: {what} takes no pipe, ring suffix, flags, memory id or options"),
    ))
}

fn invalid(name: &str, position: usize, expected: impl Into<String>) -> Error {
    Error::InvalidPortSpec {
        spec: name.to_owned(),
        position,
        expected: expected.into(),
    }
}

/// The refusal of an `emu:` name for a request the embedded switches have
/// no use for.
fn no_emu_switch(name: &str) -> Error {
    Error::Unsupported {
        backend: BackendKind::Emulated,
        what: format!("this VALE request on `{}`", Name(name)),
        hint: "the embedded switches have no NICs, host stacks, kernel threads or virtio-net \
               headers: a port joins switch `emu:valeX` when a program opens \
               `emu:valeX:NAME`, or stays on it after `new_port(\"emu:valeX:NAME\")`; \
               use the netmap kernel module for the rest"
            .into(),
    }
}

/// The switch port an `emu:` name gives, `valeX:NAME`; `None` for a name
/// of another prefix.
fn emu_port(name: &str) -> Result<Option<String>> {
    let spec = spec::parse(name)?;
    if spec.kind != PortKind::Emu {
        return Ok(None);
    }
    bare(name, &spec, "a switch port")?;
    if spec
        .nr_name
        .split_once(':')
        .is_none_or(|(sw, p)| !sw.starts_with(NM_BDG_NAME) || p.is_empty())
    {
        return Err(invalid(name, 4, "an embedded switch port, `emu:valeX:NAME`"));
    }
    Ok(Some(spec.nr_name))
}

/// The error of a failed request of an embedded switch on `name`.
fn emu_error(name: &str, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) => Error::InterfaceNotFound {
            name: name.to_owned(),
        },
        Some(libc::EEXIST) => Error::AlreadyExists {
            name: name.to_owned(),
        },
        Some(libc::EBUSY) => Error::InUse {
            name: name.to_owned(),
            reason: "a process has the port open".into(),
            hint: "close it in every process first".into(),
        },
        Some(libc::EINVAL) => Error::io(
            format!(
                "{}: not a persistent port of an embedded switch (it goes when its last user closes it)",
                Name(name)
            ),
            e,
        ),
        _ => Error::io(format!("a request of the embedded switch on {}", Name(name)), e),
    }
}

/// `name` as a switch port, `valeX:NAME`.
fn switch_port(name: &str) -> Result<PortSpec> {
    let spec = spec::parse(name)?;
    if spec.kind == PortKind::Emu {
        return Err(no_emu_switch(name));
    }
    let start = name_start(name);
    if !spec.is_vale() {
        return Err(invalid(name, start, "a VALE switch port, `valeX:NAME`"));
    }
    bare(name, &spec, "a switch port")?;
    let colon = spec.nr_name.find(':').unwrap_or(0);
    if colon > MAX_PART {
        return Err(invalid(
            name,
            start + MAX_PART,
            format!("a switch name of at most {MAX_PART} bytes"),
        ));
    }
    if after_colon(&spec).len() > MAX_PART {
        return Err(invalid(
            name,
            start + colon + 1 + MAX_PART,
            format!("a port name of at most {MAX_PART} bytes after `:`"),
        ));
    }
    Ok(spec)
}

/// The part of a switch port's name after the switch's `:`.
fn after_colon(spec: &PortSpec) -> &str {
    spec.nr_name.split_once(':').map_or("", |(_, nic)| nic)
}

/// `name` as a persistent port: an interface name without the `valeX:`
/// prefix.
fn persistent_port(name: &str) -> Result<PortSpec> {
    let spec = spec::parse(name)?;
    match spec.kind {
        PortKind::Emu => return Err(no_emu_switch(name)),
        PortKind::Netmap if !spec.is_vale() => {}
        _ => {
            return Err(invalid(
                name,
                0,
                "a persistent port's name, without `valeX:` (it is an interface; attach it to a \
                 switch as `valeX:NAME`)",
            ))
        }
    }
    bare(name, &spec, "a persistent port")?;
    let start = name_start(name);
    if let Some(i) = spec.nr_name.find(|c: char| c == ':' || c.is_whitespace()) {
        return Err(invalid(
            name,
            start + i,
            "an interface name without `:` or white space",
        ));
    }
    if spec.nr_name.len() > MAX_PART {
        return Err(invalid(
            name,
            start + MAX_PART,
            format!("an interface name of at most {MAX_PART} bytes"),
        ));
    }
    Ok(spec)
}

/// `switch` as the name a `VALE_LIST` lookup of the switch takes,
/// `valeX:`.
fn switch_name(switch: &str) -> Result<String> {
    if switch.starts_with("emu:") {
        return Err(no_emu_switch(switch));
    }
    let bare = switch.strip_suffix(':').unwrap_or(switch);
    let Some(id) = bare.strip_prefix(NM_BDG_NAME) else {
        return Err(invalid(switch, 0, "a VALE switch name, `valeX`"));
    };
    if let Some(i) = id.bytes().position(|c| !(c.is_ascii_alphanumeric() || c == b'_')) {
        return Err(invalid(
            switch,
            NM_BDG_NAME.len() + i,
            "a VALE switch name of letters, digits and `_` after `vale`",
        ));
    }
    if bare.len() > MAX_PART {
        return Err(invalid(
            switch,
            MAX_PART,
            format!("a switch name of at most {MAX_PART} bytes"),
        ));
    }
    Ok(format!("{bare}:"))
}

/// Whether this network namespace has an interface named `name`.
fn interface_exists(name: &str) -> bool {
    let Ok(name) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: `name` is a NUL-terminated string; `if_nametoindex` only
    // reads it.
    unsafe { libc::if_nametoindex(name.as_ptr()) != 0 }
}

// ---------------------------------------------------------------------------
// The device and its errors
// ---------------------------------------------------------------------------

/// A fresh `/dev/netmap` descriptor for the request about `name`, or why
/// there is none.
fn control(name: &str) -> Result<ValeCtl> {
    let dev = DevNetmap::system();
    let denied = |e: &io::Error| Error::PermissionDenied {
        what: format!("opening {} ({e})", ffi::NETMAP_DEVICE_NAME),
    };
    if let Err(e) = dev.accessible() {
        if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) {
            return Err(denied(&e));
        }
        return Err(Error::Unavailable {
            port: name.to_owned(),
            reasons: Refusals::from(vec![
                Refusal::new(BackendKind::Kernel, kernel_refusal(&e)),
                Refusal::new(
                    BackendKind::Libnetmap,
                    format!(
                        "libnetmap has no VALE control calls (they go to {})",
                        ffi::NETMAP_DEVICE_NAME
                    ),
                ),
            ]),
        });
    }
    dev.vale_ctl().map_err(|e| match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => denied(&e),
        _ => Error::io(format!("open {}", ffi::NETMAP_DEVICE_NAME), e),
    })
}

/// The VALE requests, for their errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Attach,
    Detach,
    List,
    Lookup,
    NewIf,
    DelIf,
    PollingEnable,
    PollingDisable,
    HdrSet,
    HdrGet,
}

impl Op {
    /// The request, as the messages name it.
    fn request(self) -> &'static str {
        match self {
            Op::Attach => "VALE_ATTACH",
            Op::Detach => "VALE_DETACH",
            Op::List | Op::Lookup => "VALE_LIST",
            Op::NewIf => "VALE_NEWIF",
            Op::DelIf => "VALE_DELIF",
            Op::PollingEnable => "VALE_POLLING_ENABLE",
            Op::PollingDisable => "VALE_POLLING_DISABLE",
            Op::HdrSet => "PORT_HDR_SET",
            Op::HdrGet => "PORT_HDR_GET",
        }
    }

    /// What an `EINVAL` of this request means.
    fn einval(self) -> &'static str {
        match self {
            Op::Attach => "an unknown memory region id, or a module built without VALE",
            Op::Detach => "not a VALE switch port, or a module built without VALE",
            Op::List | Op::Lookup => "not a VALE name, or a module built without VALE",
            Op::NewIf => "an unknown memory region id, or a module built without VALE",
            Op::DelIf => "not a persistent VALE port (made by `vale::new_port`, `vale-ctl -n`)",
            Op::PollingEnable => {
                "CPUs or rings out of range (a count of 0, all the CPUs, or past the NIC's rings), \
                 or not a switch port"
            }
            Op::PollingDisable => "not a switch port",
            Op::HdrSet => "a length other than 0, 10 or 12",
            Op::HdrGet => "not a netmap port",
        }
    }
}

/// The error of the request `op` about `name` that the kernel answered
/// with `e`, once the API version is known (an `EINVAL` may mean another
/// one).
fn failed(op: Op, name: &str, e: io::Error) -> Error {
    if e.raw_os_error() == Some(libc::EINVAL) {
        if let Ok(ApiVersion::Other(kernel)) = kernel::api_version(&DevNetmap::system()) {
            return Error::ApiVersionMismatch {
                kernel: kernel.into(),
                ours: NETMAP_API.into(),
            };
        }
    }
    from_errno(op, name, e)
}

/// The error of the request `op` about `name` that the kernel answered
/// with `e`.
fn from_errno(op: Op, name: &str, e: io::Error) -> Error {
    let req = op.request();
    let quoted = Name(name);
    let in_use = |reason: &str, hint: &str| Error::InUse {
        name: name.to_owned(),
        reason: reason.into(),
        hint: hint.into(),
    };
    let io = |why: &str, e| Error::io(format!("NIOCCTRL({req}) of {quoted} ({why})"), e);
    match (e.raw_os_error(), op) {
        (Some(libc::ENOENT | libc::ENXIO | libc::ENODEV), _) => Error::InterfaceNotFound {
            name: name.to_owned(),
        },
        (Some(libc::EACCES | libc::EPERM), _) => Error::PermissionDenied {
            what: format!("{req} of {quoted} ({e})"),
        },
        (Some(libc::EEXIST), _) => Error::AlreadyExists {
            name: name.to_owned(),
        },
        (Some(libc::EBUSY), Op::Detach) => in_use(
            "the switch polls it, or it is a persistent port attached to a second switch",
            "stop the polling first (`vale::polling_disable`, `vale-ctl -P`), or detach it from \
             the switch it was attached to last",
        ),
        (Some(libc::EBUSY), Op::DelIf) => in_use(
            "it is attached to a switch or open in a process",
            "detach it (`vale::detach`, `vale-ctl -d`) and close the ports that use it",
        ),
        (Some(libc::EBUSY), _) => in_use(
            "a process or a switch uses it",
            "close the ports that use it, or detach it (`vale::detach`)",
        ),
        (Some(libc::EFAULT), Op::PollingEnable) => in_use(
            "the switch polls it already (or could not start its threads)",
            "stop the polling first (`vale::polling_disable`), then start it anew",
        ),
        (Some(libc::EFAULT), Op::PollingDisable) => io("the switch does not poll it", e),
        (Some(libc::EOPNOTSUPP), Op::PollingEnable | Op::PollingDisable) => Error::Unsupported {
            backend: BackendKind::Kernel,
            what: format!("polling {quoted}, which is no NIC"),
            hint: "poll only NICs attached to a switch; a virtual port's rings move when the \
                   processes that open it sync them"
                .into(),
        },
        (Some(libc::ENOMEM), _) => io("the switch is full, or the module is out of memory", e),
        (Some(libc::ENOTTY), _) => io("/dev/netmap does not answer netmap's requests", e),
        (Some(libc::EINVAL), op) => io(op.einval(), e),
        _ => Error::io(format!("NIOCCTRL({req}) of {quoted}"), e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::devnetmap::vale_header;
    use crate::backend::errno;
    use crate::ffi::nmreq_register;

    /// The bytes of `v`, a request struct without padding (the header and
    /// every body but attach's, whose register has 4 bytes of it).
    fn bytes<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: `T` is a `repr(C)` request struct of integers without
        // padding bytes, so each of its `size_of::<T>()` bytes is
        // initialized; `v` is valid for them.
        unsafe { std::slice::from_raw_parts(std::ptr::from_ref(v).cast::<u8>(), size_of::<T>()).to_vec() }
    }

    /// The header `vale-ctl`'s `bdg_ctl` sends: zeroed, `NETMAP_API`, the
    /// name copied (`strncpy` of at most 63 bytes), the request type and
    /// the body's address.
    fn vale_ctl_header(name: &str, reqtype: u16, body: u64) -> Vec<u8> {
        let mut b = vec![0u8; 88];
        b[0..2].copy_from_slice(&NETMAP_API.to_ne_bytes());
        b[2..4].copy_from_slice(&reqtype.to_ne_bytes());
        b[8..8 + name.len()].copy_from_slice(name.as_bytes());
        b[80..88].copy_from_slice(&body.to_ne_bytes());
        b
    }

    fn addr<T>(v: &mut T) -> u64 {
        std::ptr::from_mut(v) as usize as u64
    }

    #[test]
    fn attach_sends_what_vale_ctl_sends() {
        for (host, mode) in [(false, NR_REG_ALL_NIC), (true, NR_REG_NIC_SW)] {
            let spec = switch_port("vale0:eth0").unwrap();
            let mut body = attach_body(host, &PortConf::default());
            let at = addr(&mut body);
            let hdr = vale_header(&spec.nr_name, &mut ValeBody::Attach(&mut body)).unwrap();
            assert_eq!(bytes(&hdr), vale_ctl_header("vale0:eth0", 3, at));
            // vale-ctl -a / -h: a zeroed body but for nr_mode.
            let mut want = nmreq_vale_attach::default();
            want.reg.nr_mode = mode;
            assert_eq!(body, want);
        }
        // -C 1024,512,2,3 -m 4.
        let conf = PortConf {
            tx_slots: 1024,
            rx_slots: 512,
            tx_rings: 2,
            rx_rings: 3,
            mem_id: 4,
        };
        let reg = attach_body(false, &conf).reg;
        let want = nmreq_register {
            nr_mode: NR_REG_ALL_NIC,
            nr_tx_slots: 1024,
            nr_rx_slots: 512,
            nr_tx_rings: 2,
            nr_rx_rings: 3,
            nr_mem_id: 4,
            ..Default::default()
        };
        assert_eq!(reg, want);
    }

    #[test]
    fn detach_list_newif_delif_and_polling_send_what_vale_ctl_sends() {
        let mut detach = nmreq_vale_detach::default();
        let at = addr(&mut detach);
        let hdr = vale_header("vale0:eth0", &mut ValeBody::Detach(&mut detach)).unwrap();
        assert_eq!(bytes(&hdr), vale_ctl_header("vale0:eth0", 4, at));
        assert_eq!(bytes(&detach), [0u8; 8]);

        // The walk of list_all: an empty name.
        let mut list = nmreq_vale_list::default();
        let at = addr(&mut list);
        let hdr = vale_header("", &mut ValeBody::List(&mut list)).unwrap();
        assert_eq!(bytes(&hdr), vale_ctl_header("", 5, at));

        let conf = PortConf {
            tx_slots: 1024,
            rx_slots: 2048,
            tx_rings: 2,
            rx_rings: 4,
            mem_id: 0,
        };
        let mut newif = newif_body(&conf);
        let at = addr(&mut newif);
        let hdr = vale_header("p0", &mut ValeBody::NewIf(&mut newif)).unwrap();
        assert_eq!(bytes(&hdr), vale_ctl_header("p0", 8, at));
        let mut want = Vec::new();
        want.extend(1024u32.to_ne_bytes());
        want.extend(2048u32.to_ne_bytes());
        want.extend(2u16.to_ne_bytes());
        want.extend(4u16.to_ne_bytes());
        want.extend([0u8; 4]);
        assert_eq!(bytes(&newif), want);

        // DELIF has no body: the kernel refuses one.
        let hdr = vale_header("p0", &mut ValeBody::DelIf).unwrap();
        assert_eq!(bytes(&hdr), vale_ctl_header("p0", 9, 0));

        let mut on = polling_body(Polling::MultiCpu { first: 2, count: 3 });
        let at = addr(&mut on);
        let hdr = vale_header("vale0:eth0", &mut ValeBody::PollingEnable(&mut on)).unwrap();
        assert_eq!(bytes(&hdr), vale_ctl_header("vale0:eth0", 10, at));
        let words = |v: [u32; 4]| v.iter().flat_map(|w| w.to_ne_bytes()).collect::<Vec<u8>>();
        assert_eq!(bytes(&on), words([2, 2, 3, 0]));
        assert_eq!(
            bytes(&polling_body(Polling::SingleCpu { cpu: 1 })),
            words([1, 1, 1, 0])
        );
        let mut off = nmreq_vale_polling::default();
        let at = addr(&mut off);
        let hdr = vale_header("vale0:eth0", &mut ValeBody::PollingDisable(&mut off)).unwrap();
        assert_eq!(bytes(&hdr), vale_ctl_header("vale0:eth0", 11, at));
    }

    #[test]
    fn switch_port_names() {
        assert_eq!(switch_port("vale0:eth0").unwrap().nr_name, "vale0:eth0");
        assert_eq!(switch_port("netmap:valeA:p_1").unwrap().nr_name, "valeA:p_1");
        let refused = |name: &str| match switch_port(name) {
            Err(Error::InvalidPortSpec {
                position, expected, ..
            }) => (position, expected),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(refused("eth0").0, 0);
        assert!(refused("eth0").1.contains("valeX:NAME"));
        assert_eq!(refused("netmap:eth0").0, 7);
        for (name, at) in [
            ("vale0:eth0-1", 10),
            ("vale0:eth0^", 10),
            ("vale0:eth0/x", 10),
            ("vale0:p{1", 7),
            ("vale0:p@conf:rings=2", 7),
            ("netmap:vale0:eth0*", 17),
        ] {
            let (position, expected) = refused(name);
            assert_eq!(position, at, "{name}");
            assert!(expected.contains("no pipe, ring suffix"), "{name}: {expected}");
        }
        let (position, expected) = refused("vale0:abcdefghijklmnop");
        assert_eq!(position, 6 + 15);
        assert!(expected.contains("at most 15 bytes after"), "{expected}");
        let (position, _) = refused("vale0123456789abc:p");
        assert_eq!(position, 15);
        // The grammar's own refusals.
        assert_eq!(refused("vale0:").0, 6);
        assert_eq!(refused("vale-x:p").0, 4);
    }

    #[test]
    fn persistent_port_and_switch_names() {
        assert_eq!(persistent_port("p0").unwrap().nr_name, "p0");
        assert_eq!(persistent_port("netmap:p0").unwrap().nr_name, "p0");
        let refused = |r: Result<PortSpec>| match r {
            Err(Error::InvalidPortSpec { position, .. }) => position,
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(persistent_port("vale0:p0")), 0);
        assert_eq!(refused(persistent_port("netmap:vale0:p0")), 0);
        assert_eq!(refused(persistent_port("netmap:a:b")), 8);
        assert_eq!(refused(persistent_port("p0-1")), 2);
        assert_eq!(refused(persistent_port("abcdefghijklmnop")), 15);
        assert_eq!(switch_name("vale0").unwrap(), "vale0:");
        assert_eq!(switch_name("valeA_1:").unwrap(), "valeA_1:");
        assert_eq!(switch_name("vale").unwrap(), "vale:");
        let switch = |name: &str| match switch_name(name) {
            Err(Error::InvalidPortSpec { position, .. }) => position,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(switch("eth0"), 0);
        assert_eq!(switch("vale0:p"), 5);
        assert_eq!(switch("vale-0"), 4);
        assert_eq!(switch("vale0123456789ab"), 15);
    }

    #[test]
    fn emu_names_are_refused_where_the_embedded_switch_has_no_use_for_them() {
        let calls: [(&str, Result<()>); 6] = [
            ("attach", attach("emu:vale0:p", false).map(drop)),
            ("detach", detach("emu:vale0:p").map(drop)),
            (
                "polling_enable",
                polling_enable("emu:vale0:p", Polling::SingleCpu { cpu: 0 }),
            ),
            ("polling_disable", polling_disable("emu:vale0:p")),
            ("set_header_len", set_header_len("emu:vale0:p", 10)),
            ("header_len", header_len("emu:vale0:p").map(drop)),
        ];
        for (call, r) in calls {
            let e = r.unwrap_err();
            let Error::Unsupported { backend, hint, .. } = &e else {
                panic!("{call}: {e:?}")
            };
            assert_eq!(*backend, BackendKind::Emulated, "{call}");
            assert!(hint.contains("no NICs"), "{call}: {e}");
            assert_eq!(e.io_kind(), io::ErrorKind::Unsupported);
        }
    }

    #[test]
    fn embedded_switches_list_look_up_make_and_delete_persistent_ports() {
        let sw = format!("emu:valect{}", std::process::id());
        let p = format!("{sw}:p");
        let conf = PortConf {
            tx_rings: 2,
            tx_slots: 256,
            ..Default::default()
        };
        let got = new_port(&p, &conf).unwrap();
        assert_eq!(
            (got.tx_rings, got.rx_rings, got.tx_slots, got.rx_slots),
            (2, 2, 256, 256)
        );
        assert!(matches!(new_port(&p, &conf), Err(Error::AlreadyExists { .. })));
        let listed = list(&sw).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, p);
        assert_eq!(lookup(&p).unwrap(), listed[0]);
        // Opened, the port has the persistent shape; it cannot go meanwhile.
        let open = crate::NetmapBuilder::new(&p).build().unwrap();
        assert_eq!((open.num_tx_rings(), open.num_slots()), (2, (256, 256)));
        assert!(matches!(delete_port(&p), Err(Error::InUse { .. })));
        let other = crate::NetmapBuilder::new(&format!("{sw}:q")).build().unwrap();
        assert_eq!(list(&sw).unwrap().len(), 2);
        drop((open, other));
        // The ephemeral port went with its user; the persistent one stays.
        assert_eq!(list(&sw).unwrap().len(), 1);
        assert!(matches!(
            delete_port(&format!("{sw}:q")),
            Err(Error::InterfaceNotFound { .. })
        ));
        delete_port(&p).unwrap();
        assert!(matches!(lookup(&p), Err(Error::InterfaceNotFound { .. })));
        assert!(list(&sw).unwrap().is_empty());
        for bad in ["emu:p0", "emu:vale0:", "emu:vale0:p{1", "emu:vale0:p^"] {
            assert!(
                matches!(new_port(bad, &conf), Err(Error::InvalidPortSpec { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn without_the_module_every_call_is_unavailable() {
        if std::path::Path::new(ffi::NETMAP_DEVICE_NAME).exists() {
            return;
        }
        let e = list_all().unwrap_err();
        let Error::Unavailable { reasons, .. } = &e else {
            panic!("{e:?}")
        };
        let text = reasons.to_string();
        assert!(text.contains("module is not loaded"), "{text}");
        assert!(text.contains("libnetmap has no VALE control calls"), "{text}");
        assert!(e.to_string().contains("modprobe netmap"), "{e}");
        assert!(matches!(
            attach("vale0:eth0", true),
            Err(Error::Unavailable { .. })
        ));
        assert!(matches!(delete_port("p0"), Err(Error::Unavailable { .. })));
    }

    #[test]
    fn errnos_map_to_what_the_caller_can_act_on() {
        let map = |op, name: &str, code| from_errno(op, name, errno(code));
        for code in [libc::ENOENT, libc::ENXIO] {
            let e = map(Op::Detach, "vale0:eth0", code);
            assert!(
                matches!(&e, Error::InterfaceNotFound { name } if name == "vale0:eth0"),
                "{e:?}"
            );
            assert!(e.to_string().contains("VALE switch and port names"), "{e}");
        }
        let e = map(Op::DelIf, "p9", libc::ENXIO);
        assert!(e.to_string().contains("`ip link`"), "{e}");
        let e = map(Op::Attach, "vale0:eth0", libc::EACCES);
        assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
        let e = map(Op::NewIf, "p0", libc::EEXIST);
        assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");
        assert!(e.to_string().contains("choose another name"), "{e}");
        let e = Error::AlreadyExists {
            name: "vale0:eth0".into(),
        };
        assert!(e.to_string().contains("detach it first"), "{e}");
        let busy = |op| match map(op, "vale0:eth0", libc::EBUSY) {
            Error::InUse { reason, hint, .. } => (reason, hint),
            e => panic!("{op:?}: {e:?}"),
        };
        assert!(busy(Op::Detach).1.contains("polling_disable"));
        assert!(busy(Op::DelIf).1.contains("vale::detach"));
        let e = map(Op::PollingEnable, "vale0:eth0", libc::EFAULT);
        assert!(matches!(e, Error::InUse { .. }), "{e:?}");
        let e = map(Op::PollingEnable, "vale0:p", libc::EOPNOTSUPP);
        assert!(
            matches!(
                e,
                Error::Unsupported {
                    backend: BackendKind::Kernel,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = map(Op::DelIf, "eth0", libc::EINVAL);
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        assert!(e.to_string().contains("not a persistent VALE port"), "{e}");
        let e = map(Op::PollingEnable, "vale0:eth0", libc::EINVAL);
        assert!(e.to_string().contains("out of range"), "{e}");
        let e = map(Op::Attach, "vale0:eth0", libc::ENOMEM);
        assert!(e.to_string().contains("the switch is full"), "{e}");
        let e = map(Op::List, "vale", libc::EIO);
        assert!(
            e.to_string().starts_with("NIOCCTRL(VALE_LIST) of vale failed"),
            "{e}"
        );
    }

    #[test]
    fn a_name_that_is_no_interface_is_found_missing() {
        assert!(interface_exists("lo"));
        assert!(!interface_exists("nmrsnone0"));
        assert!(!interface_exists("a\0b"));
    }
}
