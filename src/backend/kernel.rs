//! The work of libnetmap's `nmport_open`, in Rust, over any [`Kernel`]:
//! build the register request from a [`PortSpec`], register it on a
//! [`Control`](crate::backend::Control) handle, map the region, find the
//! `netmap_if` and the range of rings bound to the handle.

use std::io;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::backend::{Kernel, Mapping, MemDomain, PortFd};
use crate::error::BackendKind;
use crate::error::{Error, Name, Result};
use crate::ffi::{
    self, netmap_if, nmreq_pools_info, nmreq_port_info_get, nmreq_register, NETMAP_API, NETMAP_REQ_IFNAMSIZ,
    NR_EXCLUSIVE, NR_REG_NIC_SW, NR_REG_ONE_NIC, NR_REG_ONE_SW, NR_REG_SW, NR_RX_RINGS_ONLY,
    NR_TX_RINGS_ONLY,
};
use crate::ring::IfTable;
use crate::spec::{self, PortSpec};

/// What the caller may add to the request beyond the port name.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RegisterExtras {
    /// Extra `NR_*` flags (such as `NR_NO_TX_POLL`); they are only ever
    /// added to the name's.
    pub flags: u64,
    /// Leave out the `NR_EXCLUSIVE` that every request has otherwise (see
    /// `NetmapBuilder::share_rings` for the caller's promise).
    pub share_rings: bool,
    /// Extra buffers to ask for (`nr_extra_bufs`).
    pub extra_bufs: u32,
}

impl RegisterExtras {
    /// The flags to add to the name's: the extra ones, and `NR_EXCLUSIVE`
    /// unless the caller shares the rings.
    pub(crate) fn added_flags(&self) -> u64 {
        let exclusive = if self.share_rings { 0 } else { NR_EXCLUSIVE };
        self.flags | exclusive
    }
}

/// An open, registered and mapped port.
#[derive(Debug)]
pub(crate) struct KernelPort {
    // Field order is drop order: unmap before the handle closes, as
    // `nmport_close` does (the region belongs to the registration).
    pub map: Arc<Mapping>,
    pub fd: Box<dyn PortFd>,
    pub nifp: NonNull<netmap_if>,
    /// The `netmap_if`'s counts and ring offsets, read once.
    pub table: IfTable,
    pub reg: nmreq_register,
    /// Ids of the TX rings bound to the handle (empty if none).
    pub tx: Range<u16>,
    /// Ids of the RX rings bound to the handle (empty if none).
    pub rx: Range<u16>,
}

/// The register request a port name asks for.
pub(crate) fn register_request(spec: &PortSpec, extras: RegisterExtras) -> nmreq_register {
    let c = &spec.conf;
    nmreq_register {
        nr_mode: spec.rings.nr_mode(),
        nr_ringid: spec.rings.nr_ringid(),
        nr_flags: spec.flags | extras.added_flags(),
        nr_mem_id: spec.mem_id,
        nr_tx_rings: c.tx_rings.unwrap_or(0),
        nr_rx_rings: c.rx_rings.unwrap_or(0),
        nr_host_tx_rings: c.host_tx_rings.unwrap_or(0),
        nr_host_rx_rings: c.host_rx_rings.unwrap_or(0),
        nr_tx_slots: c.tx_slots.unwrap_or(0),
        nr_rx_slots: c.rx_slots.unwrap_or(0),
        nr_extra_bufs: extras.extra_bufs,
        ..Default::default()
    }
}

/// Checks that the kernel can be given `spec`'s `nr_name`: shorter than
/// `NETMAP_REQ_IFNAMSIZ`, its NUL included, and without a NUL of its own.
fn check_name(spec: &PortSpec) -> Result<()> {
    let name = spec.nr_name.as_bytes();
    if name.len() >= NETMAP_REQ_IFNAMSIZ || name.contains(&0) {
        return Err(Error::InvalidPortSpec {
            spec: spec.text.clone(),
            position: 0,
            expected: format!("a port name of at most {} bytes", NETMAP_REQ_IFNAMSIZ - 1),
        });
    }
    Ok(())
}

/// Opens `spec` on `kernel`: `open`, REGISTER, `mmap`, ring lookup.
pub(crate) fn open(kernel: &dyn Kernel, spec: &PortSpec, extras: RegisterExtras) -> Result<KernelPort> {
    if spec.offset.is_some() || spec.extmem.is_some() {
        return Err(Error::Unsupported {
            backend: crate::BackendKind::Kernel,
            what: "the @offset and @extmem options".into(),
            hint: "open the port through libnetmap (NETMAP_LIBRARY), or drop the option".into(),
        });
    }
    check_name(spec)?;
    let mut ctl = kernel.open().map_err(|e| open_error(kernel, e))?;
    let asked = register_request(spec, extras);
    let mut reg = asked;
    ctl.register(spec, &mut reg)
        .map_err(|e| register_error(kernel, spec, &asked, e))?;

    let memsize = usize::try_from(reg.nr_memsize).unwrap_or(usize::MAX);
    let offset = usize::try_from(reg.nr_offset).unwrap_or(usize::MAX);
    if offset
        .checked_add(std::mem::size_of::<netmap_if>())
        .is_none_or(|end| end > memsize)
    {
        return Err(Error::Io {
            op: format!("NIOCCTRL(REGISTER) on {}", Name(&spec.text)),
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("netmap_if offset {offset} outside the region of {memsize} bytes"),
            ),
        });
    }
    let map = ctl
        .mmap(memsize)
        .map_err(|e| Error::io(format!("mmap of {memsize} bytes for {}", Name(&spec.text)), e))?;
    // SAFETY: `offset + size_of::<netmap_if>() <= memsize`, checked above,
    // and the mapping spans `memsize` bytes.
    let nifp = unsafe { NonNull::new_unchecked(ffi::NETMAP_IF(map.base().as_ptr(), offset)) };
    let table = IfTable::read(&map, nifp, &reg)?;
    let (tx, rx) = ring_range(&table, spec)?;
    Ok(KernelPort {
        map: Arc::new(map),
        fd: ctl.into_port(),
        nifp,
        table,
        reg,
        tx,
        rx,
    })
}

/// First and last TX and RX ring ids bound to this handle: the rings whose
/// `ring_ofs` entries are non-zero, as libnetmap's `nmport_mmap` finds them.
fn ring_range(table: &IfTable, spec: &PortSpec) -> Result<(Range<u16>, Range<u16>)> {
    let range = |ofs: &[isize], dir: &str| -> Result<Range<u16>> {
        let Some(first) = ofs.iter().position(|&o| o != 0) else {
            return Ok(0..0);
        };
        let last = first + ofs[first..].iter().take_while(|&&o| o != 0).count();
        let to16 = |v: usize| {
            u16::try_from(v).map_err(|_| Error::RingCorrupt {
                ring: 0,
                what: format!("{dir} ring id {v} of {} out of range", Name(&spec.text)),
            })
        };
        Ok(to16(first)?..to16(last)?)
    };
    Ok((range(table.tx(), "TX")?, range(table.rx(), "RX")?))
}

fn open_error(kernel: &dyn Kernel, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied {
            what: format!("opening {} ({e})", device_name(kernel)),
        },
        _ => Error::io(format!("open {}", device_name(kernel)), e),
    }
}

fn device_name(kernel: &dyn Kernel) -> &'static str {
    match kernel.domain() {
        crate::backend::MemDomain::Kernel => ffi::NETMAP_DEVICE_NAME,
        crate::backend::MemDomain::Emulated => "the embedded netmap device",
        crate::backend::MemDomain::AfPacket => "an AF_PACKET socket",
        crate::backend::MemDomain::AfXdp => "an AF_XDP socket",
        crate::backend::MemDomain::Library(_) => "the library's netmap device",
    }
}

/// Maps the errno of a failed REGISTER of `asked` to the variant a caller
/// can act on.
fn register_error(kernel: &dyn Kernel, spec: &PortSpec, asked: &nmreq_register, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EBUSY) if kernel.domain() == MemDomain::AfXdp => xsk_busy(spec),
        Some(libc::EBUSY) => busy(spec, asked),
        _ => request_error(kernel, spec, "REGISTER", e),
    }
}

/// Maps the errno of a failed request `req` (`REGISTER`, `PORT_INFO_GET`,
/// ...) on `spec` to the variant a caller can act on, the same one for a
/// cause whatever the request.
fn request_error(kernel: &dyn Kernel, spec: &PortSpec, req: &str, e: io::Error) -> Error {
    let name = Name(&spec.text);
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENXIO) | Some(libc::ENODEV) => Error::InterfaceNotFound {
            name: spec.text.clone(),
        },
        Some(libc::EACCES) | Some(libc::EPERM) if kernel.domain() == crate::backend::MemDomain::Emulated => {
            Error::PermissionDenied {
                what: format!(
                    "{req} of {name} ({e}): the embedded kernel's region of that name belongs to \
                     another user; open it as that user, have its owner share it with a group \
                     (NETMAP_RS_EMU_GROUP) or pick another name"
                ),
            }
        }
        Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied {
            what: format!("{req} of {name} ({e})"),
        },
        // Said in words by the backend (the embedded kernel's directory).
        None if e.kind() == io::ErrorKind::PermissionDenied => Error::PermissionDenied {
            what: format!("{req} of {name}: {e}"),
        },
        // A device that knows no netmap request: not netmap's.
        Some(libc::ENOTTY) => not_netmap(kernel, req, name, e),
        Some(libc::EINVAL) => match api_version(kernel) {
            Ok(ApiVersion::Other(kernel)) => Error::ApiVersionMismatch {
                kernel: kernel.into(),
                ours: NETMAP_API.into(),
            },
            // No API version is accepted, or the probe's request is unknown.
            Ok(ApiVersion::Unknown) => not_netmap(kernel, req, name, e),
            Err(probe) if probe.raw_os_error() == Some(libc::ENOTTY) => not_netmap(kernel, req, name, e),
            _ => Error::io(
                format!("NIOCCTRL({req}) on {name} (the kernel rejected the request)"),
                e,
            ),
        },
        // The module in admode 1 (native only) for an interface without a
        // native driver, or a backend that knows no such request.
        Some(libc::EOPNOTSUPP) => Error::Unsupported {
            backend: backend_kind(kernel),
            what: format!("{req} of {name}"),
            hint: match kernel.domain() {
                MemDomain::Kernel | MemDomain::Library(_) => {
                    "the module runs only native adapters (admode 1) and this port has none: \
                     set /sys/module/netmap/parameters/admode to 0, or load netmap's driver for \
                     the interface (`netmap_rs::probe::probe_port` says which)"
                }
                MemDomain::Emulated | MemDomain::AfPacket | MemDomain::AfXdp => "open the port, and ask it",
            }
            .into(),
        },
        _ => Error::io(format!("NIOCCTRL({req}) on {name}"), e),
    }
}

/// The backend a kernel is, as errors name it.
fn backend_kind(kernel: &dyn Kernel) -> BackendKind {
    match kernel.domain() {
        MemDomain::Kernel => BackendKind::Kernel,
        MemDomain::Emulated => BackendKind::Emulated,
        MemDomain::AfPacket => BackendKind::AfPacket,
        MemDomain::AfXdp => BackendKind::AfXdp,
        MemDomain::Library(_) => BackendKind::Libnetmap,
    }
}

/// `NIOCCTRL(PORT_INFO_GET)` of `spec` on a fresh handle of `kernel`: the
/// port's shape and memory, without binding a ring. The request carries
/// the name's `@conf` shape and memory id, as REGISTER would, since the
/// module makes a port that does not exist yet (a pipe) to answer.
pub(crate) fn port_info(kernel: &dyn Kernel, spec: &PortSpec) -> Result<nmreq_port_info_get> {
    check_name(spec)?;
    let mut ctl = kernel.open().map_err(|e| open_error(kernel, e))?;
    let reg = register_request(spec, RegisterExtras::default());
    let mut info = nmreq_port_info_get {
        nr_tx_slots: reg.nr_tx_slots,
        nr_rx_slots: reg.nr_rx_slots,
        nr_tx_rings: reg.nr_tx_rings,
        nr_rx_rings: reg.nr_rx_rings,
        nr_host_tx_rings: reg.nr_host_tx_rings,
        nr_host_rx_rings: reg.nr_host_rx_rings,
        nr_mem_id: reg.nr_mem_id,
        ..Default::default()
    };
    ctl.port_info(spec, NETMAP_API, &mut info)
        .map_err(|e| request_error(kernel, spec, "PORT_INFO_GET", e))?;
    Ok(info)
}

/// `NIOCCTRL(POOLS_INFO_GET)` of `spec` on a fresh handle of `kernel`: the
/// layout of the port's memory region, in allocator `mem_id` (0: the
/// port's own, or the name's `@conf:memid`).
pub(crate) fn pools_info(kernel: &dyn Kernel, spec: &PortSpec, mem_id: u16) -> Result<nmreq_pools_info> {
    check_name(spec)?;
    let mut ctl = kernel.open().map_err(|e| open_error(kernel, e))?;
    let mut info = nmreq_pools_info {
        nr_mem_id: if mem_id != 0 { mem_id } else { spec.mem_id },
        ..Default::default()
    };
    ctl.pools_info(spec, &mut info)
        .map_err(|e| request_error(kernel, spec, "POOLS_INFO_GET", e))?;
    Ok(info)
}

/// [`Error::Busy`] for a REGISTER of `asked` on `spec` that the kernel
/// answered with `EBUSY`: some ring it selects is bound by another port
/// (exclusively, or at all when `asked` is exclusive).
pub(crate) fn busy(spec: &PortSpec, asked: &nmreq_register) -> Error {
    Error::Busy {
        name: spec.text.clone(),
        rings: rings_asked(asked),
        shareable: true,
    }
}

/// [`Error::Busy`] for an AF_XDP port of `spec` whose `bind` the kernel
/// answered with `EBUSY`: a socket of some process has a queue it names.
fn xsk_busy(spec: &PortSpec) -> Error {
    Error::Busy {
        name: spec.text.clone(),
        rings: match spec.rings {
            spec::RingSelect::OneNic(i) => format!("AF_XDP queue {i}"),
            _ => "AF_XDP queues".into(),
        },
        shareable: false,
    }
}

/// The rings a register request selects, in words: the ring selection of
/// `nr_mode` and `nr_ringid`, in the directions that `NR_TX_RINGS_ONLY` and
/// `NR_RX_RINGS_ONLY` leave.
fn rings_asked(reg: &nmreq_register) -> String {
    let tx = reg.nr_flags & NR_RX_RINGS_ONLY == 0;
    let rx = reg.nr_flags & NR_TX_RINGS_ONLY == 0;
    let dirs = |each: &dyn Fn(&str) -> String| match (tx, rx) {
        (true, true) => format!("{} and {}", each("TX"), each("RX")),
        (true, false) => each("TX"),
        (false, true) => each("RX"),
        (false, false) => "rings".into(),
    };
    let (i, j) = (reg.nr_ringid, u32::from(reg.nr_ringid) + 1);
    match reg.nr_mode {
        NR_REG_ONE_NIC => dirs(&|d| format!("{d} rings {i}..{j}")),
        NR_REG_ONE_SW => dirs(&|d| format!("host {d} rings {i}..{j}")),
        NR_REG_SW if tx && rx => "host rings".into(),
        NR_REG_SW => dirs(&|d| format!("host {d} rings")),
        NR_REG_NIC_SW => format!("{}, host rings included", dirs(&|d| format!("{d} rings"))),
        // NR_REG_ALL_NIC, NR_REG_DEFAULT, and modes the kernel refuses
        // with another errno.
        _ => format!("hardware {}", dirs(&|d| format!("{d} rings"))),
    }
}

/// The error for a request that the device refuses as no netmap device
/// would.
fn not_netmap(kernel: &dyn Kernel, req: &str, name: Name<'_>, e: io::Error) -> Error {
    Error::io(
        format!(
            "NIOCCTRL({req}) on {name}: {} does not answer netmap's requests (it is not netmap's device)",
            device_name(kernel)
        ),
        e,
    )
}

/// What a kernel says of netmap API versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApiVersion {
    /// It accepts [`NETMAP_API`].
    Ours,
    /// It refuses ours and accepts this one.
    Other(u16),
    /// It refuses every version tried.
    Unknown,
}

/// The port that [`api_version`] asks about: one named `netmap-rs-api-probe`
/// (a name the kernel takes as it is, though the port-name grammar would read
/// `-rs` as a ring suffix).
fn api_probe() -> PortSpec {
    const NAME: &str = "netmap-rs-api-probe";
    PortSpec {
        text: format!("netmap:{NAME}"),
        kind: spec::PortKind::Netmap,
        nr_name: NAME.into(),
        ifname: NAME.into(),
        pipe: None,
        rings: spec::RingSelect::AllNic,
        flags: 0,
        mem_id: 0,
        conf: spec::Conf::default(),
        offset: None,
        extmem: None,
    }
}

/// Learns which API version the kernel speaks. The kernel does not report
/// it, so ask about a port that cannot exist: a kernel that accepts the
/// version answers "no such port", one that does not answers `EINVAL`.
pub(crate) fn api_version(kernel: &dyn Kernel) -> io::Result<ApiVersion> {
    let probe = api_probe();
    let mut ctl = kernel.open()?;
    let mut accepts = |version: u16| -> io::Result<bool> {
        let mut info = ffi::nmreq_port_info_get::default();
        match ctl.port_info(&probe, version, &mut info) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => Err(e),
            Err(_) => Ok(true),
        }
    };
    if accepts(NETMAP_API)? {
        return Ok(ApiVersion::Ours);
    }
    for v in (11..=NETMAP_API + 8).filter(|&v| v != NETMAP_API) {
        if accepts(v)? {
            return Ok(ApiVersion::Other(v));
        }
    }
    Ok(ApiVersion::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::RingSelect;

    fn asked(name: &str) -> String {
        rings_asked(&register_request(
            &spec::parse(name).unwrap(),
            RegisterExtras::default(),
        ))
    }

    #[test]
    fn requests_are_exclusive_unless_shared() {
        let spec = spec::parse("netmap:eth0").unwrap();
        let flags = |extras| register_request(&spec, extras).nr_flags;
        assert_eq!(flags(RegisterExtras::default()), NR_EXCLUSIVE);
        let shared = RegisterExtras {
            share_rings: true,
            ..Default::default()
        };
        assert_eq!(flags(shared), 0);
        // Only the name or the extra flags can ask for it then.
        let named = spec::parse("netmap:eth0/x").unwrap();
        assert_eq!(register_request(&named, shared).nr_flags, NR_EXCLUSIVE);
        let extra = RegisterExtras {
            flags: NR_EXCLUSIVE,
            share_rings: true,
            extra_bufs: 0,
        };
        assert_eq!(flags(extra), NR_EXCLUSIVE);
    }

    #[test]
    fn a_name_the_kernel_cannot_take_is_refused_before_any_backend_sees_it() {
        // The grammar refuses such names; a spec made by hand may hold them.
        let mut long = spec::parse("emu:n{1").unwrap();
        long.nr_name = "n".repeat(NETMAP_REQ_IFNAMSIZ);
        let mut nul = spec::parse("emu:n{1").unwrap();
        nul.nr_name = "n\0{1".into();
        for spec in [long, nul] {
            let e = open(crate::backend::emu::emu(), &spec, RegisterExtras::default()).unwrap_err();
            let Error::InvalidPortSpec {
                spec: text, expected, ..
            } = &e
            else {
                panic!("{e:?}")
            };
            assert_eq!(text, "emu:n{1");
            assert_eq!(expected, "a port name of at most 63 bytes");
        }
    }

    #[test]
    fn the_api_probe_speaks_typed_port_info() {
        assert_eq!(api_probe().nr_name, "netmap-rs-api-probe");
        // The embedded kernel answers "no such port" in our version, EINVAL
        // in others; AF_PACKET knows no PORT_INFO_GET in ours.
        assert_eq!(api_version(crate::backend::emu::emu()).unwrap(), ApiVersion::Ours);
        let afp = crate::backend::afpacket::AfPacket::default();
        assert_eq!(api_version(&afp).unwrap(), ApiVersion::Ours);
    }

    #[test]
    fn every_request_maps_an_errno_to_one_variant() {
        let spec = spec::parse("netmap:eth9").unwrap();
        let emu = crate::backend::emu::emu();
        let map = |req, code| request_error(emu, &spec, req, crate::backend::errno(code));
        for req in ["REGISTER", "PORT_INFO_GET", "POOLS_INFO_GET"] {
            for code in [libc::ENOENT, libc::ENXIO, libc::ENODEV] {
                assert!(matches!(map(req, code), Error::InterfaceNotFound { .. }), "{req}");
            }
            for code in [libc::EACCES, libc::EPERM] {
                let e = map(req, code);
                assert!(matches!(e, Error::PermissionDenied { .. }), "{req}");
                assert!(e.to_string().contains(req), "{e}");
            }
            let e = map(req, libc::EOPNOTSUPP);
            assert!(
                matches!(
                    e,
                    Error::Unsupported {
                        backend: BackendKind::Emulated,
                        ..
                    }
                ),
                "{e}"
            );
            let e = map(req, libc::ENOTTY);
            assert!(e.to_string().contains("does not answer netmap's requests"), "{e}");
            // The embedded kernel speaks our API: EINVAL is the request's.
            let e = map(req, libc::EINVAL);
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
            assert!(e.to_string().contains("rejected the request"), "{e}");
        }
        // On the module, EOPNOTSUPP is its admode's refusal, and says so.
        let dev = crate::backend::devnetmap::DevNetmap::system();
        let e = request_error(
            &dev,
            &spec,
            "PORT_INFO_GET",
            crate::backend::errno(libc::EOPNOTSUPP),
        );
        assert!(
            matches!(
                e,
                Error::Unsupported {
                    backend: BackendKind::Kernel,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("admode"), "{e}");
        // REGISTER alone knows EBUSY.
        let reg = register_request(&spec, RegisterExtras::default());
        let e = register_error(emu, &spec, &reg, crate::backend::errno(libc::EBUSY));
        assert!(matches!(e, Error::Busy { .. }), "{e}");
    }

    #[test]
    fn busy_names_the_rings_asked_for() {
        assert_eq!(asked("netmap:eth0"), "hardware TX rings and RX rings");
        assert_eq!(asked("netmap:eth0-0"), "TX rings 0..1 and RX rings 0..1");
        assert_eq!(asked("netmap:eth0-3/T"), "TX rings 3..4");
        assert_eq!(asked("netmap:eth0/R"), "hardware RX rings");
        assert_eq!(asked("netmap:eth0^"), "host rings");
        assert_eq!(asked("netmap:eth0^/T"), "host TX rings");
        assert_eq!(
            asked("netmap:eth0^1"),
            "host TX rings 1..2 and host RX rings 1..2"
        );
        assert_eq!(
            asked("netmap:eth0*"),
            "TX rings and RX rings, host rings included"
        );
        let mut spec = spec::parse("emu:p{1").unwrap();
        spec.rings = RingSelect::OneNic(0);
        let e = busy(&spec, &register_request(&spec, RegisterExtras::default()));
        let Error::Busy {
            name,
            rings,
            shareable: true,
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(
            (name.as_str(), rings.as_str()),
            ("emu:p{1", "TX rings 0..1 and RX rings 0..1")
        );
    }
}
