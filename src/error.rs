//! The crate's one error type.
//!
//! Every variant is something a caller can act on, and every message ends by
//! saying what to do about it.

use std::fmt;
use std::io;

/// Which way of reaching netmap a port uses (or was refused).
///
/// `BackendKind` is `Send` and `Sync`: it is plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendKind {
    /// `libnetmap.so`, loaded at run time with `libloading`.
    Libnetmap,
    /// `/dev/netmap` driven directly with `ioctl` and `mmap`.
    Kernel,
    /// The embedded user-space implementation of netmap pipes (`emu:` names).
    Emulated,
    /// Linux `AF_PACKET` sockets with `PACKET_MMAP` rings (a fallback for real
    /// interfaces on hosts without netmap).
    AfPacket,
    /// Linux `AF_XDP` sockets with the crate's own XDP program (a faster
    /// fallback for real interfaces on hosts without netmap).
    AfXdp,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Libnetmap => "libnetmap",
            BackendKind::Kernel => "kernel (/dev/netmap)",
            BackendKind::Emulated => "embedded (emu)",
            BackendKind::AfPacket => "AF_PACKET",
            BackendKind::AfXdp => "AF_XDP",
        })
    }
}

/// Why one backend could not serve a port.
///
/// `Refusal` is `Send` and `Sync`: it is plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusal {
    /// The backend that was refused.
    pub backend: BackendKind,
    /// Why, in words.
    pub reason: String,
}

impl Refusal {
    /// The refusal of `backend`, for `reason`.
    ///
    /// ```
    /// use netmap_rs::{BackendKind, Refusal};
    ///
    /// let r = Refusal::new(BackendKind::Kernel, "/dev/netmap does not exist");
    /// assert_eq!(r.to_string(), "kernel (/dev/netmap): /dev/netmap does not exist");
    /// ```
    pub fn new(backend: BackendKind, reason: impl Into<String>) -> Refusal {
        Refusal {
            backend,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.backend, self.reason)
    }
}

/// A list of refusals, displayed as `a; b; c`.
///
/// `Refusals` is `Send` and `Sync`: it is plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusals(pub Vec<Refusal>);

impl From<Vec<Refusal>> for Refusals {
    fn from(list: Vec<Refusal>) -> Refusals {
        Refusals(list)
    }
}

impl fmt::Display for Refusals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong in `netmap-rs`.
///
/// `Error` is `Send`, `Sync` and `'static`: it holds only owned data and an
/// `io::Error`, so it fits `Box<dyn std::error::Error + Send + Sync>` and
/// moves to any thread.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No backend can open this port on this host.
    #[error(
        "netmap is not available for `{}` ({reasons}); load the netmap kernel module \
         (`modprobe netmap`), point NETMAP_LIBRARY at libnetmap.so, use an `emu:` port, \
         or, for a real interface, allow a fallback (`Fallback::Any`: AF_XDP, then AF_PACKET)",
        Name(port)
    )]
    Unavailable {
        /// The port that was asked for.
        port: String,
        /// Why each backend was refused.
        reasons: Refusals,
    },

    /// The operating system refused access.
    #[error(
        "permission denied: {what}; run as root, or grant the process access \
         (for /dev/netmap: its file mode; for AF_PACKET: CAP_NET_RAW; for AF_XDP: CAP_NET_RAW, \
         CAP_NET_ADMIN and CAP_BPF, or CAP_SYS_ADMIN for both)"
    )]
    PermissionDenied {
        /// What was refused.
        what: String,
    },

    /// The interface or port named does not exist. The message's advice
    /// fits the kind of name: an interface's points at `ip link`, a pipe's
    /// at the order in which its ends open, a VALE port's at the switch.
    #[error("no such interface or port `{}`; {}", Name(name), not_found_hint(name))]
    InterfaceNotFound {
        /// The port's name as parsed
        /// ([`PortSpec::text`](crate::spec::PortSpec::text)), the same on
        /// every backend.
        name: String,
    },

    /// The interface exists but is administratively down, so no packet can
    /// move on it (reported by the AF_PACKET backend).
    #[error(
        "interface `{}` is down; bring it up with `ip link set {} up`",
        Name(name),
        Name(name)
    )]
    InterfaceDown {
        /// The interface.
        name: String,
    },

    /// Rings asked for are bound by another port: ports bind their rings
    /// exclusively unless both opt out with the unsafe
    /// [`NetmapBuilder::share_rings`](crate::NetmapBuilder::share_rings),
    /// which AF_XDP cannot honour (the kernel binds one socket to a queue).
    #[error("`{}` is busy: its {rings} are bound by another port; {}", Name(name), busy_hint(*shareable))]
    #[non_exhaustive]
    Busy {
        /// The port.
        name: String,
        /// The rings this open asked for, such as `TX rings 0..1 and RX rings
        /// 0..1`, `host rings` or `AF_XDP queue 0`.
        rings: String,
        /// Whether `share_rings` on both ports would let them open side by
        /// side: `false` on AF_XDP.
        shareable: bool,
    },

    /// What a VALE request would create exists already: the port is
    /// attached to the switch, or an interface of the name exists (see
    /// [`vale`](crate::vale)).
    #[error("`{}` exists already; {}", Name(name), exists_hint(name))]
    AlreadyExists {
        /// The switch port (`valeX:NIC`) or the interface.
        name: String,
    },

    /// A VALE request was refused because the port or NIC is in use (see
    /// [`vale`](crate::vale)): open in a process, attached to a switch, or
    /// polled by one.
    #[error("`{}` is in use: {reason}; {hint}", Name(name))]
    InUse {
        /// The switch port (`valeX:NIC`) or the interface.
        name: String,
        /// Who uses it, in words.
        reason: String,
        /// What to do first.
        hint: String,
    },

    /// The port name could not be parsed.
    #[error(
        "invalid port name `{}` at byte {position}: expected {expected}\n{}\n\
         see the port-name grammar in the `spec` module docs",
        Name(spec),
        Caret { spec, position: *position }
    )]
    InvalidPortSpec {
        /// The whole name as given.
        spec: String,
        /// The byte offset of the offending character.
        position: usize,
        /// What the parser expected there.
        expected: String,
    },

    /// The kernel module speaks another netmap API version.
    #[error(
        "netmap API version mismatch: the kernel module speaks {kernel}, this crate speaks {ours}; \
         install a netmap module of API {ours}"
    )]
    ApiVersionMismatch {
        /// The version the kernel reported.
        kernel: u32,
        /// The version this crate was written for.
        ours: u32,
    },

    /// `libnetmap.so` could not be used, or refused a request.
    #[error(
        "libnetmap (`{}`){}: {reason}; fix the request, point NETMAP_LIBRARY at a working \
         libnetmap.so, or use /dev/netmap directly with `.backend(BackendKind::Kernel)`",
        Name(path),
        symbol.as_ref().map(|s| format!(", symbol `{s}`")).unwrap_or_default()
    )]
    Library {
        /// The path or soname tried.
        path: String,
        /// The missing or failing symbol, if one is to blame.
        symbol: Option<String>,
        /// What went wrong.
        reason: String,
    },

    /// A system call failed.
    #[error("{op} failed: {source}; check the port and the system log (dmesg) for details")]
    Io {
        /// The request that failed, such as `NIOCCTRL(REGISTER) on netmap:eth0`.
        op: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A TX ring has no free slot.
    #[error("TX ring {ring} is full; call sync() and retry, or wait for the port to be writable")]
    RingFull {
        /// The ring id.
        ring: u16,
    },

    /// A packet does not fit in the buffers it may use.
    #[error(
        "packet of {len} bytes is too large: at most {max} bytes fit; \
         split it, or send it as a multi-slot packet"
    )]
    PacketTooLarge {
        /// The packet's length.
        len: usize,
        /// The largest length that fits.
        max: usize,
    },

    /// A ring index past the rings the port has.
    #[error("ring index {index} is out of range: the port has {count} {dir} rings; use 0..{count}")]
    RingIndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// How many rings there are.
        count: usize,
        /// `"TX"` or `"RX"`.
        dir: &'static str,
    },

    /// A handle to this ring is already alive.
    #[error(
        "{dir} ring {index} already has a live handle; drop it first, \
         or open one port per ring for thread-per-ring designs"
    )]
    RingInUse {
        /// The ring index.
        index: usize,
        /// `"TX"` or `"RX"`.
        dir: &'static str,
    },

    /// Buffers can only be swapped between ports that share one memory region.
    #[error(
        "cannot swap buffers between ports in different memory regions ({a} and {b}); \
         copy the packet instead, or open both ports in one region (same parent, `@conf:memid`)"
    )]
    MemoryMismatch {
        /// One region.
        a: String,
        /// The other region.
        b: String,
    },

    /// The kernel (or the peer) corrupted the ring or rejected its state.
    #[error("ring {ring} is in an inconsistent state: {what}; reopen the port")]
    RingCorrupt {
        /// The ring id.
        ring: u16,
        /// What was seen.
        what: String,
    },

    /// The port was opened by another process, of which this one is a fork:
    /// its rings stay with that process.
    #[error(
        "port `{}` was opened by the process this one was forked from, and its rings stay \
         there; open the port anew in this process (after the fork)",
        Name(name)
    )]
    Forked {
        /// The port.
        name: String,
    },

    /// The AF_XDP backend would have to attach its XDP program where
    /// someone else's is attached, which it never replaces.
    #[error(
        "interface `{}` has an XDP program attached already (id {id}, {mode} mode) that is not \
         this process's, and the AF_XDP backend never replaces one: detach it (`ip link set \
         dev {} xdp off`, or end the program that attached it), open the port send-only (`/T`), \
         or use the AF_PACKET backend",
        Name(name),
        Name(name)
    )]
    XdpProgramAttached {
        /// The interface.
        name: String,
        /// The kernel's id of the attached program (`bpftool prog show id N`).
        id: u32,
        /// Where it runs: `native`, `generic` or `offloaded`.
        mode: String,
    },

    /// No extra buffer is free to keep a packet in.
    #[error(
        "no free extra buffer on {port}: all {granted} it was granted hold kept packets; drop or \
         send some (TxRing::send_kept), or open the port with NetmapBuilder::extra_buffers(more)"
    )]
    NoExtraBuffer {
        /// The port.
        port: String,
        /// How many extra buffers the port has (0 if it asked for none, or
        /// its backend has none).
        granted: usize,
    },

    /// The backend cannot do what was asked.
    #[error("{what} is not supported by the {backend} backend; {hint}")]
    Unsupported {
        /// The backend.
        backend: BackendKind,
        /// What was asked.
        what: String,
        /// What to do instead.
        hint: String,
    },
}

impl Error {
    /// Wraps an `io::Error` from the request `op`.
    pub(crate) fn io(op: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            op: op.into(),
            source,
        }
    }
}

/// The longest name, in bytes, that a message quotes whole.
const NAME_SHOWN: usize = 64;

/// A name as messages quote it: whole when it is short, else its first 64
/// bytes (cut at a character boundary) and its length, `eth0@conf:…(10240
/// bytes)`. Options can make a name as long as one likes, and a message
/// should not repeat kilobytes of it. Every name an error quotes, in its
/// own fields' text or in words built when it is made (an `op`, a `what`,
/// a refusal's `reason`), goes through here; the fields keep the name
/// whole.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Name<'a>(pub(crate) &'a str);

impl Name<'_> {
    /// Where the quoted part of the name ends: its length when it is
    /// shown whole.
    fn cut(&self) -> usize {
        let s = self.0;
        if s.len() <= NAME_SHOWN {
            return s.len();
        }
        (0..=NAME_SHOWN)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0)
    }

    /// `text`, someone else's words (a library's message) that may quote
    /// the name whole, with every such quote shortened.
    pub(crate) fn scrub(&self, text: &str) -> String {
        if self.cut() == self.0.len() || self.0.is_empty() {
            text.to_owned()
        } else {
            text.replace(self.0, &self.to_string())
        }
    }
}

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = self.cut();
        f.write_str(&self.0[..cut])?;
        if cut < self.0.len() {
            write!(f, "…({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

/// The advice of [`Error::InterfaceNotFound`] for `name`, by the kind of
/// port it names. It quotes no part of the name, which the message has
/// quoted already.
fn not_found_hint(name: &str) -> &'static str {
    let Ok(spec) = crate::spec::parse_name(name) else {
        return "check the name with `ip link`";
    };
    match (&spec.kind, &spec.pipe) {
        (crate::spec::PortKind::Emu, _) => {
            "no process has an embedded port of that name open: open it first (either end of a \
             pipe makes the pair; `vale::list(\"emu:valeX\")` lists a switch's ports)"
        }
        (_, Some(_)) => "check that the port before the `{` or `}` exists (`ip link`)",
        _ if spec.is_vale() => {
            "check the VALE switch and port names (`vale-ctl` lists the switches' ports), and \
             that the netmap module was built with VALE"
        }
        _ => "check the interface name with `ip link` (interfaces of this network namespace)",
    }
}

/// The advice of [`Error::AlreadyExists`] for `name`: a switch port's
/// (`valeX:NIC`, with a `:`) or an interface's.
fn exists_hint(name: &str) -> &'static str {
    if name.contains(':') {
        "it is attached to the switch already: detach it first (`vale::detach`, `vale-ctl -d`), \
         or leave it attached"
    } else {
        "an interface of that name exists: choose another name, or delete the persistent VALE \
         port first (`vale::delete_port`, `vale-ctl -r`)"
    }
}

/// The offending part of a malformed name, and a caret under the byte at
/// `position`: the whole name when it is short, else a window around the
/// position, `…` marking what is left out on either side.
struct Caret<'a> {
    spec: &'a str,
    position: usize,
}

impl fmt::Display for Caret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.spec;
        let at = (0..=self.position.min(s.len()))
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        let (mut start, mut end) = (0, s.len());
        if s.len() > NAME_SHOWN {
            start = at.saturating_sub(NAME_SHOWN / 2);
            while !s.is_char_boundary(start) {
                start -= 1;
            }
            end = (start + NAME_SHOWN).min(s.len());
            while !s.is_char_boundary(end) {
                end -= 1;
            }
        }
        let (before, after) = (
            if start > 0 { "…" } else { "" },
            if end < s.len() { "…" } else { "" },
        );
        let column = before.chars().count() + s[start..at].chars().count();
        write!(
            f,
            "  {before}{}{after}\n  {:>width$}",
            &s[start..end],
            "^",
            width = column + 1
        )
    }
}

/// What to do about [`Error::Busy`].
fn busy_hint(shareable: bool) -> &'static str {
    if shareable {
        "close the other port, select other rings (`-N`, `/T` or `/R` in the name), or open both ports \
         with the unsafe `NetmapBuilder::share_rings`"
    } else {
        "close the other port (of this process or another), or name another queue (`-N` in the name): \
         the kernel binds one AF_XDP socket to a queue, whichever its direction"
    }
}

/// Every error is an [`io::Error`] too, for code that speaks `io::Result`
/// (event loops, `socket2`-style wrappers): the kind fits the cause, and
/// the netmap error stays inside as the source, so nothing of the message
/// is lost and [`io::Error::get_ref`] downcasts back to it.
///
/// | variant | [`io::ErrorKind`] |
/// |---|---|
/// | [`Unavailable`](Error::Unavailable), [`ApiVersionMismatch`](Error::ApiVersionMismatch), [`Unsupported`](Error::Unsupported), [`Library`](Error::Library) naming a missing symbol | `Unsupported` |
/// | [`PermissionDenied`](Error::PermissionDenied) | `PermissionDenied` |
/// | [`InterfaceNotFound`](Error::InterfaceNotFound) | `NotFound` |
/// | [`InterfaceDown`](Error::InterfaceDown) | `NetworkDown` |
/// | [`Busy`](Error::Busy), [`RingInUse`](Error::RingInUse), [`InUse`](Error::InUse) | `ResourceBusy` |
/// | [`AlreadyExists`](Error::AlreadyExists) | `AlreadyExists` |
/// | [`InvalidPortSpec`](Error::InvalidPortSpec), [`PacketTooLarge`](Error::PacketTooLarge), [`RingIndexOutOfRange`](Error::RingIndexOutOfRange), [`MemoryMismatch`](Error::MemoryMismatch) | `InvalidInput` |
/// | [`RingFull`](Error::RingFull) | `WouldBlock` (sync, or wait for the port to be writable, and retry) |
/// | [`RingCorrupt`](Error::RingCorrupt) | `InvalidData` |
/// | [`Io`](Error::Io) | the operating system error's own kind |
/// | [`Library`](Error::Library) otherwise, [`Forked`](Error::Forked) | `Other` |
///
/// The operating system's error number of an [`Error::Io`] is its
/// `source`'s: [`Error::raw_os_error`] finds it (the `io::Error` made here
/// holds the netmap error, so its own `raw_os_error()` is `None`).
///
/// ```
/// use std::io;
/// use netmap_rs::NetmapBuilder;
///
/// fn open_pair() -> io::Result<()> {
///     let _master = NetmapBuilder::new("emu:io{1").build()?;
///     // A second exclusive port of the same rings: busy.
///     let _again = NetmapBuilder::new("emu:io{1").build()?;
///     Ok(())
/// }
///
/// let e = open_pair().unwrap_err();
/// assert_eq!(e.kind(), io::ErrorKind::ResourceBusy);
/// let inner = e.get_ref().and_then(|e| e.downcast_ref::<netmap_rs::Error>());
/// assert!(matches!(inner, Some(netmap_rs::Error::Busy { .. })));
/// ```
impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        io::Error::new(e.io_kind(), e)
    }
}

impl Error {
    /// The [`io::ErrorKind`] that `From<Error> for io::Error` gives this
    /// error (see the table there).
    pub fn io_kind(&self) -> io::ErrorKind {
        use io::ErrorKind as K;
        match self {
            Error::Unavailable { .. } | Error::ApiVersionMismatch { .. } | Error::Unsupported { .. } => {
                K::Unsupported
            }
            Error::Library { symbol: Some(_), .. } => K::Unsupported,
            Error::Library { symbol: None, .. } | Error::Forked { .. } => K::Other,
            Error::PermissionDenied { .. } => K::PermissionDenied,
            Error::InterfaceNotFound { .. } => K::NotFound,
            Error::InterfaceDown { .. } => K::NetworkDown,
            Error::Busy { .. }
            | Error::RingInUse { .. }
            | Error::InUse { .. }
            | Error::XdpProgramAttached { .. } => K::ResourceBusy,
            Error::AlreadyExists { .. } => K::AlreadyExists,
            Error::InvalidPortSpec { .. }
            | Error::PacketTooLarge { .. }
            | Error::RingIndexOutOfRange { .. }
            | Error::MemoryMismatch { .. } => K::InvalidInput,
            Error::RingFull { .. } => K::WouldBlock,
            Error::NoExtraBuffer { .. } => K::OutOfMemory,
            Error::RingCorrupt { .. } => K::InvalidData,
            Error::Io { source, .. } => source.kind(),
        }
    }

    /// The operating system's error number behind this error: that of an
    /// [`Error::Io`]'s source, if it has one; `None` for every other
    /// variant.
    ///
    /// ```
    /// use std::io;
    /// use netmap_rs::Error;
    ///
    /// let e = io::Error::from(Error::RingFull { ring: 0 });
    /// let inner = e.get_ref().and_then(|e| e.downcast_ref::<Error>()).unwrap();
    /// assert_eq!(inner.raw_os_error(), None);
    /// ```
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_spec_points_at_the_position() {
        let e = Error::InvalidPortSpec {
            spec: "netmap:eth0-x".into(),
            position: 12,
            expected: "a ring number".into(),
        };
        let text = e.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "  netmap:eth0-x");
        assert_eq!(lines[2].find('^'), Some(2 + 12));
    }

    /// Opens `name` in a function of `io::Result`, as code over sockets
    /// would: `?` turns the error into an `io::Error`.
    fn open_io(name: &str) -> io::Result<crate::Netmap> {
        Ok(crate::NetmapBuilder::new(name).build()?)
    }

    #[test]
    fn build_errors_become_io_errors_of_the_fitting_kind() {
        use io::ErrorKind as K;
        let kind = |name: &str| open_io(name).map(drop).unwrap_err().kind();
        assert_eq!(kind("netmap:eth0-x"), K::InvalidInput);
        let _held = open_io("emu:iobusy{1").unwrap();
        let e = open_io("emu:iobusy{1").unwrap_err();
        assert_eq!(e.kind(), K::ResourceBusy);
        // The netmap error is the source, message and all.
        let inner = e.get_ref().and_then(|e| e.downcast_ref::<Error>());
        assert!(matches!(inner, Some(Error::Busy { .. })), "{inner:?}");
        assert_eq!(e.to_string(), inner.unwrap().to_string());
        // Forcing a backend that cannot serve the name.
        let forced = crate::NetmapBuilder::new("emu:ioforced{1")
            .backend(BackendKind::Kernel)
            .build();
        assert_eq!(io::Error::from(forced.unwrap_err()).kind(), K::Unsupported);
    }

    #[test]
    fn io_kinds_of_the_other_variants() {
        use io::ErrorKind as K;
        let kind = |e: Error| io::Error::from(e).kind();
        assert_eq!(kind(Error::RingFull { ring: 0 }), K::WouldBlock);
        assert_eq!(
            kind(Error::PacketTooLarge { len: 3000, max: 2048 }),
            K::InvalidInput
        );
        assert_eq!(
            kind(Error::PermissionDenied { what: "x".into() }),
            K::PermissionDenied
        );
        assert_eq!(kind(Error::InterfaceDown { name: "eth0".into() }), K::NetworkDown);
        assert_eq!(kind(Error::RingInUse { index: 0, dir: "TX" }), K::ResourceBusy);
        let in_use = Error::InUse {
            name: "vale0:eth0".into(),
            reason: "x".into(),
            hint: "y".into(),
        };
        assert_eq!(kind(in_use), K::ResourceBusy);
        assert_eq!(
            kind(Error::AlreadyExists {
                name: "vale0:eth0".into()
            }),
            K::AlreadyExists
        );
        assert_eq!(
            kind(Error::RingCorrupt {
                ring: 0,
                what: "x".into()
            }),
            K::InvalidData
        );
        let missing = |symbol: Option<&str>| Error::Library {
            path: "libnetmap.so".into(),
            symbol: symbol.map(Into::into),
            reason: "x".into(),
        };
        assert_eq!(kind(missing(Some("nmport_extmem"))), K::Unsupported);
        assert_eq!(kind(missing(None)), K::Other);
    }

    #[test]
    fn io_errors_keep_the_os_error() {
        let e = Error::io(
            "NIOCTXSYNC on emu:x{1",
            io::Error::from_raw_os_error(libc::EAGAIN),
        );
        assert_eq!(e.raw_os_error(), Some(libc::EAGAIN));
        let io = io::Error::from(e);
        assert_eq!(io.kind(), io::ErrorKind::WouldBlock);
        let inner = io.get_ref().and_then(|e| e.downcast_ref::<Error>()).unwrap();
        assert_eq!(inner.raw_os_error(), Some(libc::EAGAIN));
        assert!(io.to_string().starts_with("NIOCTXSYNC on emu:x{1 failed"), "{io}");
    }

    /// A name of about 10 kB: a short port name and a long tail of options.
    fn long(port: &str) -> String {
        let name = format!("{port}{}", "@conf:rings=1".repeat(800));
        assert!(crate::spec::parse(&name).is_ok(), "{port}");
        name
    }

    /// The most any message may take for a name of any length.
    const BOUND: usize = 1500;

    fn bounded(e: &Error) -> String {
        let text = e.to_string();
        assert!(text.len() < BOUND, "{} bytes: {text}", text.len());
        text
    }

    #[test]
    fn a_long_name_is_cut_in_every_message() {
        let name = long("netmap:eth0");
        let n = name.len();
        let cut = format!("…({n} bytes)");
        let errors = [
            Error::Unavailable {
                port: name.clone(),
                reasons: Refusals::from(vec![Refusal::new(BackendKind::Kernel, "x")]),
            },
            Error::InterfaceNotFound { name: name.clone() },
            Error::InterfaceDown { name: name.clone() },
            Error::Busy {
                name: name.clone(),
                rings: "host rings".into(),
                shareable: true,
            },
            Error::InvalidPortSpec {
                spec: name.clone(),
                position: n / 2,
                expected: "x".into(),
            },
            Error::Library {
                path: name.clone(),
                symbol: None,
                reason: "x".into(),
            },
            Error::Forked { name: name.clone() },
            Error::AlreadyExists { name: name.clone() },
            Error::InUse {
                name: name.clone(),
                reason: "x".into(),
                hint: "y".into(),
            },
        ];
        for e in &errors {
            let text = bounded(e);
            assert!(text.contains(&cut), "{text}");
            assert!(text.contains(&name[..NAME_SHOWN]), "{text}");
        }
        // A short name is quoted whole.
        let e = Error::Forked {
            name: "emu:a{1".into(),
        };
        assert!(e.to_string().starts_with("port `emu:a{1` was opened"), "{e}");
        // Cut at a character boundary.
        let wide = "é".repeat(100);
        assert_eq!(Name(&wide).to_string(), format!("{}…(200 bytes)", "é".repeat(32)));
    }

    #[test]
    fn long_names_in_the_errors_of_real_opens() {
        let open = |b: crate::NetmapBuilder| b.build().map(drop).unwrap_err();
        // Each backend's own path, and the choice among them.
        let e = open(crate::NetmapBuilder::new(&long("afpacket:nmrsnone0")));
        assert!(matches!(e, Error::InterfaceNotFound { .. }), "{e}");
        bounded(&e);
        bounded(&open(crate::NetmapBuilder::new(&long("netmap:nmrsnone0"))));
        bounded(&open(
            crate::NetmapBuilder::new(&long("netmap:nmrsnone0")).fallback(crate::Fallback::AfPacket),
        ));
        bounded(&open(
            crate::NetmapBuilder::new(&long("emu:forced{1")).backend(BackendKind::Kernel),
        ));
        bounded(&open(
            crate::NetmapBuilder::new(&long("netmap:nmrsnone0")).backend(BackendKind::AfPacket),
        ));
        let held = crate::NetmapBuilder::new(&long("emu:longbusy{1"))
            .build()
            .unwrap();
        let e = open(crate::NetmapBuilder::new(&long("emu:longbusy{1")));
        assert!(matches!(e, Error::Busy { .. }), "{e}");
        bounded(&e);
        drop(held);
        // A malformed name: the caret line shows the part around the fault.
        let bad = format!("{}@conf:ring=1", long("eth0"));
        let e = open(crate::NetmapBuilder::new(&bad));
        let text = bounded(&e);
        let lines: Vec<&str> = text.lines().collect();
        let col = lines[2].find('^').unwrap();
        let under: String = lines[1].chars().skip(col).take("ring=1".len()).collect();
        assert_eq!(under, "ring=1", "{text}");
        assert!(
            lines[1].starts_with("  …") && lines[1].ends_with("ring=1"),
            "{text}"
        );
        // A port name past netmap's 63 bytes.
        bounded(&open(crate::NetmapBuilder::new(&"e".repeat(10_000))));
    }

    #[test]
    fn the_caret_counts_characters() {
        let e = crate::spec::parse("netmap:ét h0-x").unwrap_err();
        let text = e.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "  netmap:ét h0-x");
        assert_eq!(
            lines[2],
            format!("  {}^", " ".repeat("netmap:ét h0-".chars().count()))
        );
    }

    #[test]
    fn the_not_found_advice_fits_the_name() {
        let hint = |name: &str| Error::InterfaceNotFound { name: name.into() }.to_string();
        for interface in ["netmap:eth9", "afpacket:eth9", "netmap:eth9-1"] {
            let text = hint(interface);
            assert!(text.contains("`ip link`") && !text.contains("pipe"), "{text}");
        }
        let text = hint("emu:p}1");
        assert!(
            text.contains("either end of a pipe makes the pair") && !text.contains("ip link"),
            "{text}"
        );
        let text = hint("netmap:eth9}1");
        assert!(text.contains("before the `{` or `}` exists"), "{text}");
        assert!(text.contains("`ip link`"), "{text}");
        for vale in ["vale0:p1", "netmap:vale0:p1"] {
            let text = hint(vale);
            assert!(text.contains("VALE") && !text.contains("pipe"), "{text}");
        }
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = Error::RingFull { ring: 3 };
        assert!(e.to_string().contains("call sync()"));
        let e = Error::ApiVersionMismatch { kernel: 13, ours: 14 };
        assert!(e.to_string().contains("install a netmap module of API 14"));
        let e = Error::Busy {
            name: "netmap:eth0-1".into(),
            rings: "TX rings 1..2 and RX rings 1..2".into(),
            shareable: true,
        };
        assert_eq!(
            e.to_string(),
            "`netmap:eth0-1` is busy: its TX rings 1..2 and RX rings 1..2 are bound by another \
             port; close the other port, select other rings (`-N`, `/T` or `/R` in the name), or \
             open both ports with the unsafe `NetmapBuilder::share_rings`"
        );
    }
}
