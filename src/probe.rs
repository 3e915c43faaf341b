//! What this host offers, asked without failing.
//!
//! ```
//! let report = netmap_rs::probe::probe_port("netmap:eth0");
//! println!("{report}");
//! // On a host without netmap the port gets no backend, and says why.
//! if !report.device.is_available() {
//!     assert!(report.port.as_ref().unwrap().backend.is_err());
//! }
//! ```

use std::fmt;
use std::io;

use crate::backend::adapter::{self, Mode};
use crate::backend::afpacket::{self, IfState};
use crate::backend::kernel::{self, ApiVersion};
use crate::backend::select::{self, Fallback};
use crate::error::{BackendKind, Name, Refusal};
use crate::ffi;
use crate::spec;

/// What `/dev/netmap` says.
///
/// `DeviceStatus` is `Send` and `Sync`: it is plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceStatus {
    /// It opens.
    Available,
    /// It does not exist: the netmap module is not loaded.
    Absent,
    /// It exists but this process may not open it.
    PermissionDenied,
    /// Another error.
    Error(String),
}

impl DeviceStatus {
    /// Whether `/dev/netmap` opens.
    pub fn is_available(&self) -> bool {
        *self == DeviceStatus::Available
    }
}

/// What the kernel module says of API versions.
///
/// `KernelApi` is `Send` and `Sync`: it is plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelApi {
    /// The module could not be asked (no device).
    NotAsked,
    /// The module speaks this crate's version.
    Matches(u16),
    /// The module speaks another version.
    Mismatch {
        /// The module's.
        kernel: u16,
        /// This crate's.
        ours: u16,
    },
    /// The module refused every version tried.
    Unknown,
}

/// What became of `libnetmap.so`.
///
/// `LibraryStatus` is `Send` and `Sync`: it is plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LibraryStatus {
    /// Loaded with every required symbol.
    Loaded {
        /// The path or soname that loaded.
        path: String,
        /// The libnetmap entry points it exports (of those this crate knows).
        symbols: Vec<String>,
        /// Optional entry points it lacks (their features are off).
        missing_optional: Vec<String>,
        /// Which of `ioctl` and `poll` it defines itself, so that its ports
        /// are synced and polled through them (a libnetmap built over
        /// another netmap implementation); empty for one over the kernel.
        own_io: Vec<String>,
    },
    /// Not loaded, and why (each name tried).
    Unusable(String),
}

/// Whether AF_PACKET sockets can be opened.
///
/// `AfPacketStatus` is `Send` and `Sync`: it is plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AfPacketStatus {
    /// A raw packet socket opened.
    Usable,
    /// It needs `CAP_NET_RAW`, which this process lacks.
    NoCapability,
    /// Another error.
    Error(String),
}

/// Whether AF_XDP sockets can be opened, and what this process lacks to
/// open an AF_XDP port that receives (which attaches an XDP program).
///
/// `AfXdpStatus` is `Send` and `Sync`: it is plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AfXdpStatus {
    /// This kernel has AF_XDP sockets (`socket(AF_XDP)` did not answer
    /// `EAFNOSUPPORT`).
    pub kernel: bool,
    /// The capabilities this process lacks, by name (`CAP_NET_RAW`,
    /// `CAP_NET_ADMIN or CAP_SYS_ADMIN`, `CAP_BPF or CAP_SYS_ADMIN`); empty when it has all.
    pub missing: Vec<String>,
    /// Another error opening a socket, if any.
    pub error: Option<String>,
}

impl AfXdpStatus {
    /// Whether this process can open AF_XDP ports here.
    pub fn is_usable(&self) -> bool {
        self.kernel && self.missing.is_empty() && self.error.is_none()
    }
}

/// What an interface offers AF_XDP, from the kernel's netdev family
/// (Linux 6.3 on; older kernels cannot say, and the fields are `None`).
///
/// `XdpProbe` is `Send` and `Sync`: it is plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct XdpProbe {
    /// The driver runs XDP programs and redirects (native XDP).
    pub native: Option<bool>,
    /// AF_XDP sockets may bind zero-copy.
    pub zero_copy: Option<bool>,
    /// The driver's XDP feature names (`basic`, `redirect`, ...).
    pub features: Vec<String>,
    /// How an AF_XDP port would move packets with [`XdpMode::Auto`](crate::XdpMode::Auto).
    pub would_use: crate::XdpMode,
    /// XDP programs attached to the interface now, in words (id, mode, and
    /// whose); an AF_XDP port that receives cannot open while another
    /// process's program is attached.
    pub attached: Vec<String>,
}

impl XdpProbe {
    fn of(ifindex: u32) -> XdpProbe {
        use crate::backend::netdev;
        let features = netdev::xdp_features(ifindex).ok().flatten();
        let native = features.map(|f| f.native() && f.redirect());
        let zero_copy = features.map(|f| f.zero_copy());
        let would_use = match (native, zero_copy) {
            (Some(true), Some(true)) => crate::XdpMode::ZeroCopy,
            (Some(false), _) => crate::XdpMode::Generic,
            _ => crate::XdpMode::Native,
        };
        let ours = crate::backend::afxdp::ours(ifindex);
        let attached = netdev::xdp_attached(ifindex)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let mode = match p.mode {
                    netdev::XdpMode::Native => "native",
                    netdev::XdpMode::Generic => "generic",
                    netdev::XdpMode::Offload => "offloaded",
                };
                let whose = if ours {
                    "this process's"
                } else {
                    "not this process's"
                };
                format!("id {} ({mode}, {whose})", p.id)
            })
            .collect();
        XdpProbe {
            native,
            zero_copy,
            features: features
                .map(|f| f.names().into_iter().map(String::from).collect())
                .unwrap_or_default(),
            would_use,
            attached,
        }
    }
}

impl fmt::Display for XdpProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let says = |b: Option<bool>, yes: &str, no: &str| match b {
            Some(true) => yes.to_owned(),
            Some(false) => no.to_owned(),
            None => "unknown (this kernel cannot say)".to_owned(),
        };
        writeln!(
            f,
            "  AF_XDP: {}; {}; an afxdp: port would run {:?}",
            says(
                self.native,
                "native XDP",
                "generic XDP only (no native XDP in the driver)"
            ),
            says(
                self.zero_copy,
                "zero-copy",
                "copy mode (no zero-copy in the driver)"
            ),
            self.would_use
        )?;
        if !self.features.is_empty() {
            writeln!(f, "    xdp-features: {}", self.features.join(", "))?;
        }
        for a in &self.attached {
            writeln!(f, "    XDP program attached: {a}")?;
        }
        Ok(())
    }
}

/// How the netmap module runs (or would run) an interface.
///
/// `AdapterMode` is `Send` and `Sync`: it is plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AdapterMode {
    /// With its native netmap driver.
    Native,
    /// Through netmap's generic (emulated) adapter, over the stock driver.
    Generic,
    /// Not at all: the module runs native adapters only (admode 1) and the
    /// interface has none, so a REGISTER fails (`EOPNOTSUPP`).
    Refused,
    /// The module is not loaded: [`DriverProbe::native_why`] says what will
    /// decide it.
    NotLoaded,
}

/// What drives an interface, and whether netmap runs it natively or in
/// emulated (generic) mode.
///
/// `DriverProbe` is `Send` and `Sync`: it is plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DriverProbe {
    /// The driver's name for itself (`ethtool -i`'s `driver:`, else the
    /// device's driver in sysfs); `None` when it gives none (the loopback).
    pub driver: Option<String>,
    /// The kernel module that holds the driver; `None` when it is built in.
    pub module: Option<String>,
    /// netmap's name for its native version of the driver, if it has one
    /// (`LINUX/configure`'s list: e1000, e1000e, igb, igc, ixgbe, ixgbevf,
    /// i40e, ice, vmxnet3, mlx5, r8169, virtio_net, forcedeth, veth, stmmac;
    /// and `sink`, netmap.ko's own `nmsink` devices).
    pub netmap_driver: Option<String>,
    /// Whether the interface has a native netmap adapter now: its module
    /// is netmap's build of the driver (it uses `netmap.ko`, and sysfs
    /// lists it under `/sys/module/netmap/holders/`).
    pub native: bool,
    /// Why [`native`](Self::native) is what it is, and what would change it.
    pub native_why: String,
    /// The module's `admode` (`/sys/module/netmap/parameters/admode`: 0
    /// native if there is one, else generic; 1 native only; 2 generic
    /// only); `None` when the module is not loaded.
    pub admode: Option<u32>,
    /// The mode a REGISTER would get now.
    pub mode: AdapterMode,
}

impl DriverProbe {
    /// The driver and mode of interface `name`, read from sysfs and ethtool.
    fn of(name: &str) -> DriverProbe {
        let f = adapter::facts(name);
        let (native, native_why) = f.native();
        DriverProbe {
            netmap_driver: f
                .driver
                .as_deref()
                .and_then(adapter::netmap_driver)
                .map(Into::into),
            native,
            native_why,
            admode: f.admode,
            mode: match f.mode() {
                Mode::Native => AdapterMode::Native,
                Mode::Generic => AdapterMode::Generic,
                Mode::Refused => AdapterMode::Refused,
                Mode::NotLoaded => AdapterMode::NotLoaded,
            },
            driver: f.driver,
            module: f.module,
        }
    }
}

/// Three lines: the driver, its native support, the mode, each indented
/// by two spaces.
impl fmt::Display for DriverProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.driver, &self.module) {
            (Some(d), Some(m)) => writeln!(f, "  driver: {d} (module {m})")?,
            (Some(d), None) => writeln!(f, "  driver: {d} (built in)")?,
            (None, _) => writeln!(f, "  driver: none reported")?,
        }
        let yes = if self.native { "yes" } else { "no" };
        writeln!(f, "  native netmap support: {yes}: {}", self.native_why)?;
        let admode = self.admode.map(|a| format!(" (admode {a})")).unwrap_or_default();
        match (self.mode, &self.netmap_driver) {
            (AdapterMode::Native, _) => writeln!(f, "  netmap mode: native{admode}"),
            (AdapterMode::Generic, _) => writeln!(f, "  netmap mode: generic (emulated){admode}"),
            (AdapterMode::Refused, _) => writeln!(
                f,
                "  netmap mode: none{admode}: the module runs native adapters only; set admode \
                 to 0 for generic"
            ),
            (AdapterMode::NotLoaded, Some(n)) => writeln!(
                f,
                "  netmap mode: decided when netmap.ko loads: native if netmap's {n} is loaded \
                 then, else generic (admode 0, the default)"
            ),
            (AdapterMode::NotLoaded, None) => writeln!(
                f,
                "  netmap mode: generic (emulated) once netmap.ko loads (admode 0 or 2; admode 1 \
                 refuses it)"
            ),
        }
    }
}

/// Which backend a given port name would get.
///
/// `PortProbe` is `Send` and `Sync`: it is plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PortProbe {
    /// The name asked about.
    pub name: String,
    /// The fallback the answer assumes ([`probe_port`]: none).
    pub fallback: Fallback,
    /// The backend `build()` would pick, or why the name gets none.
    pub backend: Result<BackendKind, String>,
    /// Why each other backend was passed over.
    pub refused: Vec<Refusal>,
    /// When the fallback was not allowed but would change the answer: what
    /// `build()` would do with [`Fallback::Any`].
    pub with_fallback: Option<Result<BackendKind, String>>,
    /// For a name of a real interface: whether it exists here and
    /// is up, in words.
    pub interface: Option<String>,
    /// For an interface that exists here: its driver, and whether netmap
    /// runs it natively or in emulated (generic) mode.
    pub driver: Option<DriverProbe>,
    /// For an interface that exists here: what it offers AF_XDP.
    pub xdp: Option<XdpProbe>,
}

/// A report of what this host offers. See [`probe`].
///
/// `Probe` is `Send` and `Sync`: a report in plain data; it holds no
/// descriptor or library handle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Probe {
    /// `/dev/netmap`.
    pub device: DeviceStatus,
    /// The module's API version, when it can be learnt.
    pub kernel_api: KernelApi,
    /// The API version this crate speaks.
    pub our_api: u16,
    /// `libnetmap.so`.
    pub library: LibraryStatus,
    /// AF_PACKET sockets.
    pub af_packet: AfPacketStatus,
    /// AF_XDP sockets.
    pub af_xdp: AfXdpStatus,
    /// The port asked about, if any.
    pub port: Option<PortProbe>,
}

/// Reports what this host offers. Never fails and never panics.
pub fn probe() -> Probe {
    let (device, kernel_api) = match select::kernel_status() {
        Ok(()) => (DeviceStatus::Available, api()),
        Err(e) => (device_status(&e), KernelApi::NotAsked),
    };
    let library = match crate::backend::libnetmap::load() {
        Ok(lib) => LibraryStatus::Loaded {
            path: lib.path.clone(),
            symbols: lib.symbols.iter().map(|s| s.to_string()).collect(),
            missing_optional: lib.missing_optional.iter().map(|s| s.to_string()).collect(),
            own_io: lib.own_io.iter().map(|s| s.to_string()).collect(),
        },
        Err(e) => LibraryStatus::Unusable(e.to_string()),
    };
    Probe {
        device,
        kernel_api,
        our_api: ffi::NETMAP_API,
        library,
        af_packet: af_packet_status(),
        af_xdp: af_xdp_status(),
        port: None,
    }
}

/// Like [`probe`], and also says which backend `name` would get and why the
/// others were refused (with no fallback allowed, as
/// [`NetmapBuilder::new(name).build()`](crate::NetmapBuilder) would), and
/// what allowing the AF_PACKET fallback would change.
pub fn probe_port(name: &str) -> Probe {
    probe_port_with(name, Fallback::None)
}

/// Like [`probe_port`], for a build that allows `fallback`: it says whether
/// the port would fall back to AF_PACKET, and why netmap could not serve it.
///
/// ```
/// use netmap_rs::{probe::probe_port_with, BackendKind, Fallback};
///
/// let report = probe_port_with("netmap:eth0", Fallback::AfPacket);
/// let port = report.port.as_ref().unwrap();
/// let no_library = matches!(report.library, netmap_rs::probe::LibraryStatus::Unusable(_));
/// if !report.device.is_available() && no_library {
///     // No netmap here: the port falls back, and `refused` says why.
///     assert_eq!(port.backend, Ok(BackendKind::AfPacket));
///     assert!(port.refused.iter().any(|r| r.backend == BackendKind::Kernel));
/// }
/// ```
pub fn probe_port_with(name: &str, fallback: Fallback) -> Probe {
    let mut p = probe();
    let port = match spec::parse(name) {
        Ok(spec) => {
            let (choice, refused) = select::choose(&spec, None, fallback);
            let backend = choice.map(|c| c.backend).map_err(|e| e.to_string());
            let with_fallback = match fallback {
                Fallback::None if afpacket::serves(&spec).is_ok() && !spec.kind.is_socket() => {
                    let alt = select::choose(&spec, None, Fallback::Any)
                        .0
                        .map(|c| c.backend)
                        .map_err(|e| e.to_string());
                    (alt != backend).then_some(alt)
                }
                _ => None,
            };
            let name = &spec.ifname;
            let state = (spec.kind != crate::spec::PortKind::Emu
                && afpacket::serves_interface(&spec, "").is_ok())
            .then(|| afpacket::interface_state(name));
            let interface = state.as_ref().map(|state| match state {
                Ok(IfState::Up) => format!("{name} exists and is up"),
                Ok(IfState::Down) => format!("{name} is down (`ip link set {name} up`)"),
                Ok(IfState::Missing) => format!("no interface {name} in this network namespace"),
                Err(e) => format!("{name}: {e}"),
            });
            let exists = matches!(state, Some(Ok(IfState::Up | IfState::Down)));
            let driver = exists.then(|| DriverProbe::of(name));
            let xdp = exists
                .then(|| afpacket::if_index(name).ok())
                .flatten()
                .map(|i| XdpProbe::of(i as u32));
            PortProbe {
                name: spec.text.clone(),
                fallback,
                backend,
                refused,
                with_fallback,
                interface,
                driver,
                xdp,
            }
        }
        Err(e) => PortProbe {
            name: name.to_owned(),
            fallback,
            backend: Err(e.to_string()),
            refused: Vec::new(),
            with_fallback: None,
            interface: None,
            driver: None,
            xdp: None,
        },
    };
    p.port = Some(port);
    p
}

fn device_status(e: &io::Error) -> DeviceStatus {
    match e.raw_os_error() {
        Some(libc::ENOENT) => DeviceStatus::Absent,
        Some(libc::EACCES) | Some(libc::EPERM) => DeviceStatus::PermissionDenied,
        _ => DeviceStatus::Error(e.to_string()),
    }
}

fn api() -> KernelApi {
    match kernel::api_version(&crate::backend::devnetmap::DevNetmap::system()) {
        Ok(ApiVersion::Ours) => KernelApi::Matches(ffi::NETMAP_API),
        Ok(ApiVersion::Other(kernel)) => KernelApi::Mismatch {
            kernel,
            ours: ffi::NETMAP_API,
        },
        Ok(ApiVersion::Unknown) | Err(_) => KernelApi::Unknown,
    }
}

fn af_packet_status() -> AfPacketStatus {
    match afpacket::socket_status() {
        Ok(()) => AfPacketStatus::Usable,
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) => {
            AfPacketStatus::NoCapability
        }
        Err(e) => AfPacketStatus::Error(e.to_string()),
    }
}

fn af_xdp_status() -> AfXdpStatus {
    let (kernel, mut error) = match crate::backend::afxdp::socket_status() {
        Ok(()) => (true, None),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EAFNOSUPPORT) | Some(libc::EPROTONOSUPPORT)
            ) =>
        {
            (false, None)
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) => (true, None),
        Err(e) => (true, Some(e.to_string())),
    };
    let missing = match crate::backend::afxdp::missing_caps() {
        Ok(m) => m.into_iter().map(String::from).collect(),
        Err(e) => {
            error.get_or_insert(format!("reading this process's capabilities: {e}"));
            Vec::new()
        }
    };
    AfXdpStatus {
        kernel,
        missing,
        error,
    }
}

/// This process's effective capability set (`CapEff` in /proc/self/status).
impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "netmap-rs probe (this crate speaks netmap API {})",
            self.our_api
        )?;
        let dev = ffi::NETMAP_DEVICE_NAME;
        match &self.device {
            DeviceStatus::Available => writeln!(f, "  kernel module: {dev} opens")?,
            DeviceStatus::Absent => writeln!(f, "  kernel module: not loaded ({dev} does not exist)")?,
            DeviceStatus::PermissionDenied => {
                writeln!(f, "  kernel module: loaded, but {dev}: permission denied")?
            }
            DeviceStatus::Error(e) => writeln!(f, "  kernel module: {dev}: {e}")?,
        }
        match self.kernel_api {
            KernelApi::NotAsked => {}
            KernelApi::Matches(v) => writeln!(f, "  kernel API: {v} (matches)")?,
            KernelApi::Mismatch { kernel, ours } => {
                writeln!(f, "  kernel API: {kernel} (this crate needs {ours})")?
            }
            KernelApi::Unknown => writeln!(f, "  kernel API: unknown (every version tried was refused)")?,
        }
        match &self.library {
            LibraryStatus::Loaded {
                path,
                symbols,
                missing_optional,
                own_io,
            } => {
                if missing_optional.is_empty() {
                    writeln!(f, "  libnetmap: {path} (every symbol present)")?;
                } else {
                    writeln!(
                        f,
                        "  libnetmap: {path} (missing optional: {})",
                        missing_optional.join(", ")
                    )?;
                }
                writeln!(f, "    exports: {}", symbols.join(", "))?;
                if !own_io.is_empty() {
                    writeln!(
                        f,
                        "    defines its own {}: its ports sync and poll through them",
                        own_io.join(" and ")
                    )?;
                }
            }
            LibraryStatus::Unusable(why) => writeln!(f, "  libnetmap: unusable: {why}")?,
        }
        match &self.af_packet {
            AfPacketStatus::Usable => writeln!(
                f,
                "  AF_PACKET: usable (the fallback for real interfaces, when allowed)"
            )?,
            AfPacketStatus::NoCapability => writeln!(f, "  AF_PACKET: needs CAP_NET_RAW")?,
            AfPacketStatus::Error(e) => writeln!(f, "  AF_PACKET: {e}")?,
        }
        let x = &self.af_xdp;
        match (x.kernel, &x.error) {
            (false, _) => writeln!(f, "  AF_XDP: not in this kernel (CONFIG_XDP_SOCKETS)")?,
            (true, Some(e)) => writeln!(f, "  AF_XDP: {e}")?,
            (true, None) if x.missing.is_empty() => writeln!(
                f,
                "  AF_XDP: usable (the faster fallback for real interfaces, when allowed)"
            )?,
            (true, None) => writeln!(f, "  AF_XDP: needs {}", x.missing.join(", "))?,
        }
        writeln!(f, "  embedded kernel: always available for `emu:` names")?;
        if let Some(p) = &self.port {
            let name = Name(&p.name);
            let fell_back = matches!(p.backend, Ok(BackendKind::AfPacket | BackendKind::AfXdp))
                && p.refused.iter().any(|r| r.backend == BackendKind::Kernel);
            match &p.backend {
                Ok(b) if fell_back => writeln!(
                    f,
                    "port {name}: would open with {b}, the fallback allowed, because netmap cannot:"
                )?,
                Ok(b) => writeln!(f, "port {name}: would open with {b}")?,
                Err(_) if !p.refused.is_empty() => writeln!(f, "port {name}: no backend can open it")?,
                Err(e) => writeln!(f, "port {name}: cannot open: {e}")?,
            }
            for r in &p.refused {
                writeln!(f, "  not {}: {}", r.backend, r.reason)?;
            }
            match &p.with_fallback {
                Some(Ok(b)) => writeln!(f, "  with Fallback::Any: would open with {b}")?,
                Some(Err(e)) => writeln!(f, "  with Fallback::Any: cannot open: {e}")?,
                None => {}
            }
            if let Some(i) = &p.interface {
                writeln!(f, "  interface: {i}")?;
            }
            if let Some(d) = &p.driver {
                write!(f, "{d}")?;
            }
            if let Some(x) = &p.xdp {
                write!(f, "{x}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_never_fails_and_reports_emu_choice() {
        let p = probe_port("emu:probe{1");
        assert_eq!(p.port.as_ref().unwrap().backend, Ok(BackendKind::Emulated));
        let text = p.to_string();
        assert!(text.contains("would open with embedded"), "{text}");
    }

    #[test]
    fn probe_reports_a_bad_name() {
        let p = probe_port("netmap:eth0-");
        let port = p.port.unwrap();
        assert!(port.backend.unwrap_err().contains("invalid port name"));
    }
}
