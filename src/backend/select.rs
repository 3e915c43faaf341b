//! Which backend opens a port: the choice among the embedded kernel,
//! libnetmap, `/dev/netmap`, AF_XDP and AF_PACKET, the reasons each one
//! passed over was refused, and the open itself.
//!
//! The order, for a name that is not `emu:`, `afpacket:` or `afxdp:`:
//! libnetmap if it loaded with every required entry point, else
//! `/dev/netmap` if it is usable, else the fallbacks the caller allowed, for
//! a real interface's name: AF_XDP, then AF_PACKET (also when AF_XDP was
//! tried and failed); [`Error::Unavailable`] with every refusal otherwise. A
//! forced backend is tried alone.

use std::io;
use std::sync::{Arc, LazyLock};

use crate::backend::afpacket::{self, AfPacket};
use crate::backend::afxdp::{self, AfXdp};
use crate::backend::devnetmap::DevNetmap;
use crate::backend::kernel::{self, KernelPort, RegisterExtras};
use crate::backend::libnetmap::{self, LibNetmap};
use crate::backend::{emu, Kernel, MemDomain};
use crate::error::{BackendKind, Error, Name, Refusal, Refusals, Result};
use crate::ffi;
use crate::spec::{PortKind, PortSpec};

/// Whether [`NetmapBuilder::build`](crate::NetmapBuilder::build) may fall
/// back to another way of moving packets when netmap cannot serve a port.
///
/// `Fallback` is `Send` and `Sync`: it is plain data.
///
/// The fallback is never taken unless asked for: a program that wants netmap
/// and gets AF_PACKET sees other performance and semantics, so it must say
/// that it accepts them.
///
/// ```
/// use netmap_rs::{Fallback, NetmapBuilder};
///
/// // On a host without netmap this opens eth0 through AF_PACKET sockets;
/// // `port.backend()` and `port.refusals()` say so, and why.
/// let builder = NetmapBuilder::new("netmap:eth0").fallback(Fallback::AfPacket);
/// // AF_XDP where it works (root, a kernel with AF_XDP, no other XDP
/// // program on eth0), else AF_PACKET.
/// let builder = NetmapBuilder::new("netmap:eth0").fallback(Fallback::Any);
/// # drop(builder);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Fallback {
    /// Netmap or nothing (the default).
    #[default]
    None,
    /// When no netmap backend can open a real interface's port (`netmap:eth0`,
    /// `eth0`, `eth0-N`), open it with Linux `AF_PACKET` sockets and their
    /// `PACKET_MMAP` rings instead, with the same API. Pipes, host rings
    /// (`^`, `*`), VALE ports and monitors are netmap-only and still fail.
    AfPacket,
    /// As [`AfPacket`](Fallback::AfPacket), with Linux `AF_XDP` sockets:
    /// kernel bypass on any interface, with the crate's own XDP program
    /// (see [`XdpMode`]). Needs root (CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW).
    AfXdp,
    /// AF_XDP, and AF_PACKET where AF_XDP cannot open the port (no AF_XDP in
    /// the kernel, another XDP program on the interface, ...): the port's
    /// [`refusals`](crate::Netmap::refusals) say why it was passed over.
    Any,
}

impl Fallback {
    fn xdp(self) -> bool {
        matches!(self, Fallback::AfXdp | Fallback::Any)
    }

    fn packet(self) -> bool {
        matches!(self, Fallback::AfPacket | Fallback::Any)
    }
}

/// How an AF_XDP port moves packets: asked for with
/// [`NetmapBuilder::xdp_mode`](crate::NetmapBuilder::xdp_mode), reported by
/// [`Netmap::xdp_mode`](crate::Netmap::xdp_mode).
///
/// `XdpMode` is `Send` and `Sync`: it is plain data.
///
/// ```
/// use netmap_rs::{NetmapBuilder, XdpMode};
///
/// // Fail rather than run without zero-copy.
/// let builder = NetmapBuilder::new("afxdp:eth0").xdp_mode(XdpMode::ZeroCopy);
/// # drop(builder);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum XdpMode {
    /// The best the interface offers (the default): the program in the
    /// driver where it has native XDP, on the skb otherwise; zero-copy
    /// where the driver allows it, copy mode otherwise. Never reported.
    #[default]
    Auto,
    /// The program runs in the driver (native XDP), and the kernel copies
    /// packets between the UMEM and its own buffers.
    Native,
    /// The program runs on the skb (generic XDP), for any interface; packets
    /// are copied. Slower than native.
    Generic,
    /// Native XDP and zero-copy: the NIC reads and writes the UMEM itself.
    ZeroCopy,
}

/// What a build may do beyond the name: options that are not part of
/// netmap's register request.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct How {
    pub(crate) fallback: Fallback,
    pub(crate) promisc: bool,
    pub(crate) xdp: XdpMode,
}

/// A port that a backend opened.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) port: KernelPort,
    pub(crate) backend: BackendKind,
    pub(crate) domain: MemDomain,
    /// Why the backends tried before `backend` were passed over.
    pub(crate) refused: Vec<Refusal>,
}

/// Picks the backend for `spec` and opens it.
pub(crate) fn open(
    spec: &PortSpec,
    extras: RegisterExtras,
    forced: Option<BackendKind>,
    how: How,
) -> Result<Opened> {
    let (choice, mut refused) = choose(spec, forced, how.fallback);
    let mut choice = choice?;
    let (port, domain) = match &choice.via {
        Via::AfXdp { then_afpacket } => match open_afxdp(spec, extras, how) {
            Ok(opened) => opened,
            Err(e) if *then_afpacket => {
                refused.push(Refusal::new(BackendKind::AfXdp, e.to_string()));
                choice = Choice::afpacket();
                open_afpacket(spec, extras, how)?
            }
            Err(e) => return Err(e),
        },
        Via::AfPacket => open_afpacket(spec, extras, how)?,
        Via::Kernel(k) => (kernel::open(*k, spec, extras)?, k.domain()),
        // libnetmap drives the real kernel, or the netmap behind its own
        // `ioctl`, whose memory is its own.
        Via::Libnetmap(lib) => (libnetmap::open(lib, spec, extras)?, lib.domain),
    };
    Ok(Opened {
        port,
        backend: choice.backend,
        domain,
        refused,
    })
}

fn open_afpacket(spec: &PortSpec, extras: RegisterExtras, how: How) -> Result<(KernelPort, MemDomain)> {
    afpacket::preflight(spec)?;
    let kernel = AfPacket { promisc: how.promisc };
    Ok((kernel::open(&kernel, spec, extras)?, kernel.domain()))
}

fn open_afxdp(spec: &PortSpec, extras: RegisterExtras, how: How) -> Result<(KernelPort, MemDomain)> {
    afxdp::preflight(spec, how.xdp)?;
    let kernel = AfXdp { mode: how.xdp };
    Ok((kernel::open(&kernel, spec, extras)?, kernel.domain()))
}

/// The kernel that answers the info requests (PORT_INFO_GET,
/// POOLS_INFO_GET) of `spec`, and the backend `build()` would open it with,
/// chosen as `build()` chooses with no fallback: the embedded kernel for
/// `emu:` names, `/dev/netmap` when libnetmap or the kernel would serve the
/// port (libnetmap has no entry point for these requests, and a library
/// over the kernel asks the same module), [`Error::Unsupported`] for
/// AF_PACKET and for a libnetmap that brings its own `ioctl`.
pub(crate) fn info_kernel(spec: &PortSpec) -> Result<(&'static dyn Kernel, BackendKind)> {
    let choice = choose(spec, None, Fallback::None).0?;
    let unsupported = |hint: &str| Error::Unsupported {
        backend: choice.backend,
        what: format!("port and pools info without opening {}", Name(&spec.text)),
        hint: hint.into(),
    };
    match &choice.via {
        Via::Kernel(k) => Ok((*k, choice.backend)),
        Via::Libnetmap(lib) if lib.own_io.is_empty() => match kernel_status() {
            Ok(()) => Ok((&*DEV_NETMAP, choice.backend)),
            Err(e) => Err(Error::Unavailable {
                port: spec.text.clone(),
                reasons: Refusals::from(vec![Refusal::new(BackendKind::Kernel, kernel_refusal(&e))]),
            }),
        },
        Via::Libnetmap(_) => Err(unsupported(
            "the library's own netmap answers only its ports' requests: open the port and call \
             `Netmap::port_info`",
        )),
        Via::AfPacket | Via::AfXdp { .. } => Err(unsupported(
            "a socket backend's port has a shape only once it is open: open it and call \
             `Netmap::port_info`",
        )),
    }
}

/// The kernel that answers info requests about an open port whose memory
/// is in `domain`: `/dev/netmap` for the module's (ports opened through it
/// or through a libnetmap over it), the embedded kernel for its own; none
/// for AF_PACKET's and a library's own netmap.
pub(crate) fn domain_kernel(domain: MemDomain) -> Option<&'static dyn Kernel> {
    match domain {
        MemDomain::Kernel => Some(&*DEV_NETMAP),
        MemDomain::Emulated => Some(emu::emu()),
        MemDomain::AfPacket | MemDomain::AfXdp | MemDomain::Library(_) => None,
    }
}

/// The backend chosen for a port.
pub(crate) struct Choice {
    via: Via,
    pub(crate) backend: BackendKind,
}

/// How a chosen backend opens ports.
enum Via {
    /// `kernel::open` over this kernel.
    Kernel(&'static dyn Kernel),
    /// `kernel::open` over AF_PACKET sockets, after its preflight checks.
    AfPacket,
    /// `kernel::open` over AF_XDP sockets, after its preflight checks; if
    /// that fails and `then_afpacket`, AF_PACKET.
    AfXdp { then_afpacket: bool },
    /// `nmport_prepare` + `nmport_open_desc` of this libnetmap.
    Libnetmap(Arc<LibNetmap>),
}

impl Choice {
    fn afpacket() -> Choice {
        Choice {
            via: Via::AfPacket,
            backend: BackendKind::AfPacket,
        }
    }

    fn afxdp(then_afpacket: bool) -> Choice {
        Choice {
            via: Via::AfXdp { then_afpacket },
            backend: BackendKind::AfXdp,
        }
    }

    /// The fallback `fallback` allows first, if any.
    fn fallback(fallback: Fallback) -> Option<Choice> {
        if fallback.xdp() {
            Some(Choice::afxdp(fallback.packet()))
        } else if fallback.packet() {
            Some(Choice::afpacket())
        } else {
            None
        }
    }
}

static DEV_NETMAP: LazyLock<DevNetmap> = LazyLock::new(DevNetmap::system);

/// Which backend `build()` would use for `spec` (or why none can), and why
/// each backend it passed over was refused.
///
/// AF_PACKET and AF_XDP serve their own prefixes' names always, other names
/// of real interfaces when forced, or when no netmap backend can and
/// `fallback` allows them; never otherwise, and then the refusals say
/// whether they could have served the port.
pub(crate) fn choose(
    spec: &PortSpec,
    forced: Option<BackendKind>,
    fallback: Fallback,
) -> (Result<Choice>, Vec<Refusal>) {
    let mut refused = Vec::new();
    if let Some(choice) = by_name_or_force(spec, forced, &mut refused) {
        return (choice, refused);
    }
    // Whether a fallback may replace netmap here, if netmap cannot serve.
    let may_fall_back = forced.is_none() && fallback != Fallback::None && afpacket::serves(spec).is_ok();
    if forced.is_none() || forced == Some(BackendKind::Libnetmap) {
        if let Some(choice) = try_libnetmap(forced, may_fall_back, &mut refused) {
            return (choice, refused);
        }
    }
    let choice = try_kernel(spec, forced, may_fall_back.then_some(fallback), &mut refused);
    (choice, refused)
}

/// The choice that the name's prefix (`emu:`, `afpacket:`) or a forced
/// embedded or AF_PACKET backend makes on its own, if any.
fn by_name_or_force(
    spec: &PortSpec,
    forced: Option<BackendKind>,
    refused: &mut Vec<Refusal>,
) -> Option<Result<Choice>> {
    let fail = |refused: &mut Vec<Refusal>, backend, why: &str| {
        refused.push(Refusal::new(backend, why));
        Some(Err(unavailable(spec, refused)))
    };
    match (&spec.kind, forced) {
        (PortKind::Emu, None | Some(BackendKind::Emulated)) => Some(Ok(Choice {
            via: Via::Kernel(emu::emu()),
            backend: BackendKind::Emulated,
        })),
        (PortKind::Emu, Some(other)) => {
            fail(refused, other, "`emu:` names exist only in the embedded kernel")
        }
        (PortKind::AfPacket, None | Some(BackendKind::AfPacket)) => Some(Ok(Choice::afpacket())),
        (PortKind::AfPacket, Some(other)) => {
            fail(refused, other, "`afpacket:` names are served only by AF_PACKET")
        }
        (PortKind::AfXdp, None | Some(BackendKind::AfXdp)) => Some(Ok(Choice::afxdp(false))),
        (PortKind::AfXdp, Some(other)) => fail(refused, other, "`afxdp:` names are served only by AF_XDP"),
        (_, Some(BackendKind::AfXdp)) => Some(match afxdp::serves(spec) {
            Ok(()) => Ok(Choice::afxdp(false)),
            Err(why) => {
                let hint = format!("{why}; load the netmap kernel module for them");
                refused.push(Refusal::new(BackendKind::AfXdp, why));
                Err(Error::Unsupported {
                    backend: BackendKind::AfXdp,
                    what: format!("opening {}", Name(&spec.text)),
                    hint,
                })
            }
        }),
        (_, Some(BackendKind::AfPacket)) => Some(match afpacket::serves(spec) {
            Ok(()) => Ok(Choice::afpacket()),
            Err(why) => {
                let hint = format!("{why}; load the netmap kernel module for them");
                refused.push(Refusal::new(BackendKind::AfPacket, why));
                Err(Error::Unsupported {
                    backend: BackendKind::AfPacket,
                    what: format!("opening {}", Name(&spec.text)),
                    hint,
                })
            }
        }),
        _ => {
            refused.push(Refusal::new(BackendKind::Emulated, "it serves only `emu:` names"));
            (forced == Some(BackendKind::Emulated)).then(|| Err(unavailable(spec, refused)))
        }
    }
}

/// libnetmap, where it loaded: where the site has it, it decides the
/// port-name grammar and the ABI details. An error opening through it is
/// returned as is, not retried on /dev/netmap. `None`: go on to the kernel.
fn try_libnetmap(
    forced: Option<BackendKind>,
    may_fall_back: bool,
    refused: &mut Vec<Refusal>,
) -> Option<Result<Choice>> {
    match libnetmap::load() {
        // A libnetmap over the kernel cannot open ports without
        // /dev/netmap; where the fallback is allowed, say so and go on.
        Ok(lib) if may_fall_back && lib.own_io.is_empty() && kernel_status().is_err() => {
            refused.push(Refusal::new(
                BackendKind::Libnetmap,
                format!("{} loaded, but it needs {}", lib.path, ffi::NETMAP_DEVICE_NAME),
            ));
            None
        }
        Ok(lib) => Some(Ok(Choice {
            via: Via::Libnetmap(lib.clone()),
            backend: BackendKind::Libnetmap,
        })),
        Err(e) => {
            refused.push(Refusal::new(BackendKind::Libnetmap, e.to_string()));
            (forced == Some(BackendKind::Libnetmap)).then(|| Err(e.into()))
        }
    }
}

/// `/dev/netmap`, else the fallback where allowed (`fall_back`), else the
/// error that says why neither.
fn try_kernel(
    spec: &PortSpec,
    forced: Option<BackendKind>,
    fall_back: Option<Fallback>,
    refused: &mut Vec<Refusal>,
) -> Result<Choice> {
    let e = match kernel_status() {
        Ok(()) => {
            return Ok(Choice {
                via: Via::Kernel(&*DEV_NETMAP),
                backend: BackendKind::Kernel,
            })
        }
        Err(e) => e,
    };
    refused.push(Refusal::new(BackendKind::Kernel, kernel_refusal(&e)));
    if let Some(choice) = fall_back.and_then(Choice::fallback) {
        return Ok(choice);
    }
    for (backend, variant, prefix) in [
        (BackendKind::AfXdp, "AfXdp", "afxdp"),
        (BackendKind::AfPacket, "AfPacket", "afpacket"),
    ] {
        match afpacket::serves(spec) {
            Ok(()) if forced.is_none() => refused.push(Refusal::new(
                backend,
                format!(
                    "not allowed: NetmapBuilder::fallback(Fallback::{variant} or Fallback::Any), \
                     or the name `{prefix}:{}`, would use it",
                    Name(&spec.ifname)
                ),
            )),
            Ok(()) => {}
            Err(why) => refused.push(Refusal::new(backend, why)),
        }
    }
    Err(
        if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) {
            Error::PermissionDenied {
                what: format!("opening {} ({e})", ffi::NETMAP_DEVICE_NAME),
            }
        } else {
            unavailable(spec, refused)
        },
    )
}

fn unavailable(spec: &PortSpec, refused: &[Refusal]) -> Error {
    Error::Unavailable {
        port: spec.text.clone(),
        reasons: Refusals::from(refused.to_vec()),
    }
}

/// Whether `/dev/netmap` can be opened.
pub(crate) fn kernel_status() -> io::Result<()> {
    DEV_NETMAP.accessible()
}

/// Why `/dev/netmap` cannot be used, in words.
pub(crate) fn kernel_refusal(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => format!(
            "{} does not exist (the netmap kernel module is not loaded)",
            ffi::NETMAP_DEVICE_NAME
        ),
        Some(libc::EACCES) | Some(libc::EPERM) => format!("{}: permission denied", ffi::NETMAP_DEVICE_NAME),
        _ => format!("{}: {e}", ffi::NETMAP_DEVICE_NAME),
    }
}
