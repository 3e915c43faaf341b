//! Port names: text to [`PortSpec`].
//!
//! A netmap port is named by one string, such as `netmap:eth0-2/x` or
//! `vale0:p1@conf:rings=4`. This module turns that string into a [`PortSpec`]:
//! which kind of port it is, the name the kernel sees (`nr_name`), which rings
//! to bind, the register flags, the memory region, and the options. Parsing is
//! pure (no system calls, no allocation beyond the result) and never panics:
//! every malformed name gives [`Error::InvalidPortSpec`] with the byte offset
//! of the offending character in the string as it was given, and what was
//! expected there.
//!
//! The grammar is that of libnetmap's `nmport_open`, plus the `emu:`,
//! `afpacket:` and `afxdp:` prefixes and plain interface names (see below).
//!
//! # Grammar
//!
//! ```text
//! name      = prefix port [rings] {modifier} {"@" option}
//!           | port [rings] {modifier} {"@" option}      ; plain: no ':' before the first '@'
//! prefix    = "netmap:" | "emu:" | "afpacket:" | "afxdp:" | "vale" ident ":"
//! port      = portname [("{" | "}") pipeid]
//! portname  = one or more bytes, none of  - * ^ / @ { }  nor NUL
//! pipeid    = ident, not empty
//! rings     = "^" | "^" number | "*" | "-" number       ; number below 4095
//! modifier  = "/" flag {flag}                           ; flags
//!           | "/"                                       ; only when '@' follows, as libnetmap allows
//!           | "@" number                                ; memory id, 1 to 65535
//! flag      = "x" | "z" | "t" | "r" | "R" | "T"
//! option    = "conf:" [kv {"," kv}]
//!           | "extmem=" FILE | "extmem:" kv {"," kv}
//!           | "offset=" number | "offset:" kv {"," kv}
//! kv        = key "=" value                             ; '-' in a key reads as '_'
//! ident     = {"A".."Z" | "a".."z" | "0".."9" | "_"}
//! number    = decimal digits
//! ```
//!
//! ## Prefixes and the port name
//!
//! | prefix | [`PortKind`] | `nr_name` of `PREFIX` + `p{1` |
//! |---|---|---|
//! | `netmap:` | [`PortKind::Netmap`] | `p{1` (the prefix is not passed to netmap) |
//! | `vale` + bridge + `:` | [`PortKind::Vale`] | `vale0:p{1` (the prefix is part of the name) |
//! | `emu:` | [`PortKind::Emu`] (the embedded kernel) | `p{1` |
//! | `afpacket:` | [`PortKind::AfPacket`] (`AF_PACKET` sockets) | `p`; pipes are refused |
//! | `afxdp:` | [`PortKind::AfXdp`] (`AF_XDP` sockets) | `p`; pipes are refused |
//! | none | [`PortKind::Netmap`], `netmap:` is implied | `p{1` |
//!
//! A name is *plain* when it has no `:` before its first `@` (for example
//! `eth0`, `eth0-2/x`, `eth0{1` or `eth0@conf:rings=2`): it is read as if it
//! began with `netmap:`, and [`PortSpec::text`] holds that normalized form.
//! Error positions always count in the string as it was given.
//!
//! The port name runs up to the first of `- * ^ / @`. Inside it, the first `{`
//! or `}` starts a pipe id: `{` names the master end of a pipe, `}` the slave
//! end. The name netmap receives (`nr_name`) must be at most 63 bytes
//! (`NETMAP_REQ_IFNAMSIZ` less its NUL).
//!
//! `afpacket:` and `afxdp:` reach real interfaces only: pipes, host rings
//! (`^`, `*`) and VALE ports (any `:` in the name) are refused there.
//!
//! ## Rings, flags and memory id
//!
//! | suffix | [`RingSelect`] | meaning |
//! |---|---|---|
//! | (none) | [`RingSelect::AllNic`] | every hardware ring pair |
//! | `^` | [`RingSelect::Host`] | every host ring pair |
//! | `^N` | [`RingSelect::OneHost`] | host ring pair `N` |
//! | `*` | [`RingSelect::NicAndHost`] | every hardware and host ring pair |
//! | `-N` | [`RingSelect::OneNic`] | hardware ring pair `N` |
//!
//! Then, in any order and repeated as libnetmap allows, `/` followed by flags
//! and `@N` giving the memory region id (`N` > 0; given twice it must agree):
//!
//! | flag | `nr_flags` bit |
//! |---|---|
//! | `x` | `NR_EXCLUSIVE` (every port has it unless opened with `NetmapBuilder::share_rings`) |
//! | `z` | `NR_ZCOPY_MON` |
//! | `t` | `NR_MONITOR_TX` |
//! | `r` | `NR_MONITOR_RX` |
//! | `R` | `NR_RX_RINGS_ONLY` |
//! | `T` | `NR_TX_RINGS_ONLY` |
//!
//! ## Options
//!
//! An `@` not followed by a digit starts the options, each introduced by `@`,
//! in any order. An option is `NAME:key=value,key=value`; `extmem` and
//! `offset` also take `NAME=value` for their default key. Each key may be
//! given once per option; values are decimal numbers without sign or suffix,
//! except `file`. `extmem` and `offset` may be given once; `conf` may be
//! repeated, and a later one overrides an earlier one.
//!
//! | option | keys | result |
//! |---|---|---|
//! | `conf` | `rings`, `host_rings`, `slots`, `tx_rings`, `rx_rings`, `host_tx_rings`, `host_rx_rings`, `tx_slots`, `rx_slots` | [`Conf`]: `rings` sets TX and RX, `host_rings` both host counts, `slots` both slot counts; the specific keys win over these whatever their order |
//! | `extmem` | `file` (default, required), `if_num`, `if_size`, `ring_num`, `ring_size`, `buf_num`, `buf_size` | [`ExtmemOpt`]; the file is not opened here |
//! | `offset` | `initial` (default, required), `bits` | [`OffsetOpt`] with `maxoff` = `initial` and `mingap` = 0 |
//!
//! # Examples
//!
//! ```
//! use netmap_rs::spec::{parse, PipeRole, PortKind, RingSelect};
//!
//! let s = parse("eth0-2/x@conf:slots=1024")?;
//! assert_eq!(s.text, "netmap:eth0-2/x@conf:slots=1024");
//! assert_eq!(s.kind, PortKind::Netmap);
//! assert_eq!(s.nr_name, "eth0");
//! assert_eq!(s.rings, RingSelect::OneNic(2));
//! assert_eq!(s.conf.tx_slots, Some(1024));
//!
//! let s = parse("vale0:p}3^")?;
//! assert_eq!(s.nr_name, "vale0:p}3");
//! assert_eq!(s.ifname, "vale0:p");
//! assert_eq!(s.pipe.as_ref().map(|p| p.role), Some(PipeRole::Slave));
//! assert!(s.is_vale() && s.is_pipe() && s.is_host());
//!
//! let e = parse("netmap:eth0-x").unwrap_err();
//! assert!(matches!(e, netmap_rs::Error::InvalidPortSpec { position: 12, .. }));
//! # Ok::<(), netmap_rs::Error>(())
//! ```

mod options;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use crate::error::Error;
use crate::ffi;

use parse::Parser;

/// What kind of port a name designates, from its prefix.
///
/// `PortKind` is `Send` and `Sync`: it is plain data.
///
/// ```
/// use netmap_rs::spec::{parse, PortKind};
///
/// assert_eq!(parse("eth0")?.kind, PortKind::Netmap);
/// assert_eq!(parse("valeA:p1")?.kind, PortKind::Vale { bridge: "valeA".into() });
/// assert_eq!(parse("emu:pipe{1")?.kind, PortKind::Emu);
/// assert_eq!(parse("afpacket:eth0")?.kind, PortKind::AfPacket);
/// assert_eq!(parse("afxdp:eth0-1")?.kind, PortKind::AfXdp);
/// # Ok::<(), netmap_rs::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortKind {
    /// `netmap:` or a plain name: a hardware port, a pipe, or anything the
    /// kernel knows by that name.
    Netmap,
    /// `valeX:`: a port of the VALE switch `bridge`.
    Vale {
        /// The switch's name as written, `vale` included: `"vale0"`,
        /// `"valeA"`, or just `"vale"`.
        bridge: String,
    },
    /// `emu:`: a port of the embedded user-space kernel.
    Emu,
    /// `afpacket:`: a real interface reached through `AF_PACKET` sockets.
    AfPacket,
    /// `afxdp:`: a real interface reached through `AF_XDP` sockets, one per
    /// RX queue (`afxdp:eth0-2`: queue 2).
    AfXdp,
}

impl PortKind {
    /// Whether the prefix names a socket backend's interface (`afpacket:`,
    /// `afxdp:`), which has no pipes, VALE ports or host rings.
    pub(crate) fn is_socket(&self) -> bool {
        matches!(self, PortKind::AfPacket | PortKind::AfXdp)
    }
}

/// Which end of a netmap pipe a name opens. A pipe has exactly two ends, so
/// unlike the crate's other enums this one is exhaustive: a `match` needs
/// no wildcard arm.
///
/// `PipeRole` is `Send` and `Sync`: it is plain data.
///
/// ```
/// use netmap_rs::spec::{parse, PipeRole};
///
/// assert_eq!(parse("p{1")?.pipe.unwrap().role, PipeRole::Master);
/// assert_eq!(parse("p}1")?.pipe.unwrap().role, PipeRole::Slave);
/// # Ok::<(), netmap_rs::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeRole {
    /// `{`: the master end.
    Master,
    /// `}`: the slave end.
    Slave,
}

/// The pipe part of a port name: `{ID` or `}ID`.
///
/// `PipeSpec` is `Send` and `Sync`: it is plain data.
///
/// ```
/// use netmap_rs::spec::{parse, PipeRole, PipeSpec};
///
/// let s = parse("netmap:eth0{tap_1")?;
/// assert_eq!(s.pipe, Some(PipeSpec::new(PipeRole::Master, "tap_1")));
/// # Ok::<(), netmap_rs::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipeSpec {
    /// Master (`{`) or slave (`}`).
    pub role: PipeRole,
    /// The pipe id: letters, digits and `_`, not empty.
    pub id: String,
}

impl PipeSpec {
    /// The `role` end of pipe `id`.
    pub fn new(role: PipeRole, id: impl Into<String>) -> PipeSpec {
        PipeSpec { role, id: id.into() }
    }
}

/// Which rings a port binds, from the suffix after the port name.
///
/// `RingSelect` is `Send` and `Sync`: it is plain data.
///
/// ```
/// use netmap_rs::spec::{parse, RingSelect};
///
/// assert_eq!(parse("eth0")?.rings, RingSelect::AllNic);
/// assert_eq!(parse("eth0^")?.rings, RingSelect::Host);
/// assert_eq!(parse("eth0*")?.rings, RingSelect::NicAndHost);
/// assert_eq!(parse("eth0-3")?.rings, RingSelect::OneNic(3));
/// assert_eq!(parse("eth0^1")?.rings, RingSelect::OneHost(1));
/// # Ok::<(), netmap_rs::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RingSelect {
    /// No suffix: every hardware ring pair (`NR_REG_ALL_NIC`).
    AllNic,
    /// `^`: every host ring pair (`NR_REG_SW`).
    Host,
    /// `*`: every hardware and host ring pair (`NR_REG_NIC_SW`).
    NicAndHost,
    /// `-N`: hardware ring pair `N` (`NR_REG_ONE_NIC`).
    OneNic(u16),
    /// `^N`: host ring pair `N` (`NR_REG_ONE_SW`).
    OneHost(u16),
}

impl RingSelect {
    /// The `nr_mode` of `nmreq_register` for this selection (`NR_REG_*`).
    ///
    /// ```
    /// use netmap_rs::spec::RingSelect;
    ///
    /// assert_eq!(RingSelect::OneNic(2).nr_mode(), netmap_rs::ffi::NR_REG_ONE_NIC);
    /// assert_eq!(RingSelect::AllNic.nr_mode(), netmap_rs::ffi::NR_REG_ALL_NIC);
    /// ```
    pub fn nr_mode(&self) -> u32 {
        match self {
            RingSelect::AllNic => ffi::NR_REG_ALL_NIC,
            RingSelect::Host => ffi::NR_REG_SW,
            RingSelect::NicAndHost => ffi::NR_REG_NIC_SW,
            RingSelect::OneNic(_) => ffi::NR_REG_ONE_NIC,
            RingSelect::OneHost(_) => ffi::NR_REG_ONE_SW,
        }
    }

    /// The `nr_ringid` of `nmreq_register`: the ring number for
    /// [`OneNic`](RingSelect::OneNic) and [`OneHost`](RingSelect::OneHost),
    /// 0 otherwise.
    ///
    /// ```
    /// use netmap_rs::spec::RingSelect;
    ///
    /// assert_eq!(RingSelect::OneHost(5).nr_ringid(), 5);
    /// assert_eq!(RingSelect::Host.nr_ringid(), 0);
    /// ```
    pub fn nr_ringid(&self) -> u16 {
        match self {
            RingSelect::OneNic(n) | RingSelect::OneHost(n) => *n,
            _ => 0,
        }
    }
}

/// The `@conf:` option: ring and slot counts to ask for (`None`: keep the
/// port's default).
///
/// `Conf` is `Send` and `Sync`: it is plain data.
///
/// ```
/// use netmap_rs::spec::{parse, Conf};
///
/// let s = parse("vale0:p@conf:rings=2,tx_rings=4,slots=512")?;
/// let mut want = Conf::default();
/// want.tx_rings = Some(4);
/// want.rx_rings = Some(2);
/// want.tx_slots = Some(512);
/// want.rx_slots = Some(512);
/// assert_eq!(s.conf, want);
/// # Ok::<(), netmap_rs::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Conf {
    /// `tx_rings=` (or `rings=`): hardware TX rings.
    pub tx_rings: Option<u16>,
    /// `rx_rings=` (or `rings=`): hardware RX rings.
    pub rx_rings: Option<u16>,
    /// `host_tx_rings=` (or `host_rings=`): host TX rings.
    pub host_tx_rings: Option<u16>,
    /// `host_rx_rings=` (or `host_rings=`): host RX rings.
    pub host_rx_rings: Option<u16>,
    /// `tx_slots=` (or `slots=`): slots per TX ring.
    pub tx_slots: Option<u32>,
    /// `rx_slots=` (or `slots=`): slots per RX ring.
    pub rx_slots: Option<u32>,
}

/// The `@offset:` option: per-slot buffer offsets (`NETMAP_REQ_OPT_OFFSETS`).
///
/// `OffsetOpt` is `Send` and `Sync`: it is plain data.
///
/// As in libnetmap, only `initial` and `bits` can be written; `maxoff` is set
/// to `initial` and `mingap` to 0.
///
/// ```
/// use netmap_rs::spec::{parse, OffsetOpt};
///
/// let s = parse("eth0@offset:initial=64,bits=8")?;
/// assert_eq!(s.offset, Some(OffsetOpt::new(64, 64, 8, 0)));
/// assert_eq!(parse("eth0@offset=32")?.offset.unwrap().bits, 0);
/// # Ok::<(), netmap_rs::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OffsetOpt {
    /// `initial=` (the default key, required): the offset every slot starts with.
    pub initial: u64,
    /// The largest offset that will be used: `initial`.
    pub maxoff: u64,
    /// `bits=`: how many bits of `ptr` hold the offset (0 when not given).
    pub bits: u64,
    /// The minimum gap between the offset and the buffer's end: 0.
    pub mingap: u64,
}

impl OffsetOpt {
    /// Offsets that start at `initial`, stay at most `maxoff`, live in the
    /// low `bits` bits of a slot's `ptr`, with `mingap` bytes free after
    /// each packet (the arguments of
    /// [`NetmapBuilder::offsets`](crate::NetmapBuilder::offsets)).
    pub fn new(initial: u64, maxoff: u64, bits: u64, mingap: u64) -> OffsetOpt {
        OffsetOpt {
            initial,
            maxoff,
            bits,
            mingap,
        }
    }
}

/// The `@extmem:` option: netmap memory in a file the user maps.
///
/// `ExtmemOpt` is `Send` and `Sync`: it is plain data.
///
/// The numeric keys fill `nmreq_pools_info`, whose fields are 32 bits wide,
/// so each is at most `u32::MAX`.
///
/// ```
/// use netmap_rs::spec::parse;
///
/// let s = parse("eth0@extmem:file=/dev/hugepages/nm,buf_num=4096")?;
/// let x = s.extmem.unwrap();
/// assert_eq!(x.file, "/dev/hugepages/nm");
/// assert_eq!(x.buf_num, Some(4096));
/// assert_eq!(parse("eth0@extmem=/tmp/m")?.extmem.unwrap().file, "/tmp/m");
/// # Ok::<(), netmap_rs::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtmemOpt {
    /// `file=` (the default key, required): the file to map. Not opened here.
    pub file: String,
    /// `if_num=`: number of `netmap_if` objects.
    pub if_num: Option<u64>,
    /// `if_size=`: size of a `netmap_if` object.
    pub if_size: Option<u64>,
    /// `ring_num=`: number of rings.
    pub ring_num: Option<u64>,
    /// `ring_size=`: size of a ring.
    pub ring_size: Option<u64>,
    /// `buf_num=`: number of buffers.
    pub buf_num: Option<u64>,
    /// `buf_size=`: size of a buffer.
    pub buf_size: Option<u64>,
}

impl ExtmemOpt {
    /// External memory in `file`, every size left to the kernel (set the
    /// fields to ask for more).
    ///
    /// ```
    /// use netmap_rs::spec::{parse, ExtmemOpt};
    ///
    /// let mut want = ExtmemOpt::new("/dev/hugepages/nm");
    /// want.buf_num = Some(4096);
    /// assert_eq!(parse("eth0@extmem:file=/dev/hugepages/nm,buf_num=4096")?.extmem, Some(want));
    /// # Ok::<(), netmap_rs::Error>(())
    /// ```
    pub fn new(file: impl Into<String>) -> ExtmemOpt {
        ExtmemOpt {
            file: file.into(),
            ..ExtmemOpt::default()
        }
    }
}

/// A parsed port name. See the [module docs](self) for the grammar.
///
/// `PortSpec` is `Send` and `Sync`: it is plain data, a name taken apart; it
/// opens nothing.
///
/// ```
/// use netmap_rs::spec::{PortSpec, RingSelect};
///
/// let s: PortSpec = "netmap:eth1^0/xT@3".parse()?;
/// assert_eq!(s.nr_name, "eth1");
/// assert_eq!(s.rings, RingSelect::OneHost(0));
/// assert_eq!(s.flags, netmap_rs::ffi::NR_EXCLUSIVE | netmap_rs::ffi::NR_TX_RINGS_ONLY);
/// assert_eq!(s.mem_id, 3);
/// assert_eq!(s.to_string(), "netmap:eth1^0/xT@3");
/// # Ok::<(), netmap_rs::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PortSpec {
    /// The full name, normalized: the input, with `netmap:` put before a
    /// plain name.
    pub text: String,
    /// What the prefix says the port is.
    pub kind: PortKind,
    /// The name netmap receives in `nmreq_header.nr_name`: `"eth0"`,
    /// `"eth0{1"`, `"vale0:p1"`, `"valeA:p}2"`; for `emu:` the name after the
    /// prefix, for `afpacket:` the interface name.
    pub nr_name: String,
    /// `nr_name` without the pipe suffix: `"eth0"`, `"vale0:p1"`.
    pub ifname: String,
    /// The pipe end, for `{ID` and `}ID` names.
    pub pipe: Option<PipeSpec>,
    /// The rings to bind.
    pub rings: RingSelect,
    /// The `nr_flags` bits given after `/`.
    pub flags: u64,
    /// The memory region id given as `@N` (0: not given).
    pub mem_id: u16,
    /// The `@conf:` settings (all `None` when not given).
    pub conf: Conf,
    /// The `@offset:` option.
    pub offset: Option<OffsetOpt>,
    /// The `@extmem:` option.
    pub extmem: Option<ExtmemOpt>,
}

impl PortSpec {
    /// Whether the port binds host rings only ([`RingSelect::Host`] or
    /// [`RingSelect::OneHost`]).
    ///
    /// ```
    /// use netmap_rs::spec::parse;
    ///
    /// assert!(parse("eth0^")?.is_host());
    /// assert!(!parse("eth0*")?.is_host());
    /// # Ok::<(), netmap_rs::Error>(())
    /// ```
    pub fn is_host(&self) -> bool {
        matches!(self.rings, RingSelect::Host | RingSelect::OneHost(_))
    }

    /// Whether the name opens one end of a pipe (`{ID` or `}ID`).
    ///
    /// ```
    /// use netmap_rs::spec::parse;
    ///
    /// assert!(parse("emu:a{1")?.is_pipe());
    /// assert!(!parse("emu:a")?.is_pipe());
    /// # Ok::<(), netmap_rs::Error>(())
    /// ```
    pub fn is_pipe(&self) -> bool {
        self.pipe.is_some()
    }

    /// Whether the port is on a VALE switch: a `valeX:` name, or a `netmap:`
    /// name whose `nr_name` has that form (netmap reads `netmap:vale0:p` as
    /// the VALE port `vale0:p`).
    ///
    /// ```
    /// use netmap_rs::spec::parse;
    ///
    /// assert!(parse("vale0:p")?.is_vale());
    /// assert!(parse("netmap:vale0:p")?.is_vale());
    /// assert!(!parse("eth0")?.is_vale());
    /// # Ok::<(), netmap_rs::Error>(())
    /// ```
    pub fn is_vale(&self) -> bool {
        match self.kind {
            PortKind::Vale { .. } => true,
            PortKind::Netmap => self
                .nr_name
                .strip_prefix("vale")
                .and_then(|rest| rest.split_once(':'))
                .is_some_and(|(id, _)| is_ident(id)),
            PortKind::Emu | PortKind::AfPacket | PortKind::AfXdp => false,
        }
    }
}

impl fmt::Display for PortSpec {
    /// Writes [`PortSpec::text`], which parses back to an equal `PortSpec`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for PortSpec {
    type Err = Error;

    /// The same as [`parse`].
    fn from_str(s: &str) -> crate::Result<Self> {
        parse(s)
    }
}

/// Parses a port name. See the [module docs](self) for the grammar.
///
/// # Errors
///
/// [`Error::InvalidPortSpec`] with the name as given, the byte offset of the
/// first character that does not fit (or the name's length when it ends too
/// early), and what was expected there.
///
/// ```
/// use netmap_rs::{spec::parse, Error};
///
/// let s = parse("valeA:p}2@conf:host-rings=1")?;
/// assert_eq!(s.nr_name, "valeA:p}2");
/// assert_eq!(s.conf.host_tx_rings, Some(1));
///
/// match parse("eth0/q") {
///     Err(Error::InvalidPortSpec { position, expected, .. }) => {
///         assert_eq!(position, 5);
///         assert!(expected.contains("flags"));
///     }
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), netmap_rs::Error>(())
/// ```
pub fn parse(name: &str) -> crate::Result<PortSpec> {
    parse_name(name).map_err(Error::from)
}

/// [`parse`], with the error in a form that clones: the builder keeps it
/// until `build`.
pub(crate) fn parse_name(name: &str) -> Result<PortSpec> {
    if let Some(i) = name.bytes().position(|b| b == 0) {
        return Err(invalid(name, i, "any character but NUL"));
    }
    // Plain: no ':' before the first '@' (a prefix always ends in ':', and
    // the port name always ends before any '@').
    let head = &name[..name.find('@').unwrap_or(name.len())];
    let (text, shift) = if head.contains(':') {
        (name.to_owned(), 0)
    } else {
        (format!("netmap:{name}"), "netmap:".len())
    };
    Parser {
        input: name,
        text: &text,
        b: text.as_bytes(),
        shift,
    }
    .parse()
}

/// A malformed name: the fields of [`Error::InvalidPortSpec`], which it
/// becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    spec: String,
    position: usize,
    expected: String,
}

impl From<Invalid> for Error {
    fn from(e: Invalid) -> Error {
        Error::InvalidPortSpec {
            spec: e.spec,
            position: e.position,
            expected: e.expected,
        }
    }
}

/// The parser's results.
type Result<T, E = Invalid> = std::result::Result<T, E>;

/// Builds the error for `name` at byte `position` of `name`.
fn invalid(name: &str, position: usize, expected: impl Into<String>) -> Invalid {
    Invalid {
        spec: name.to_owned(),
        position,
        expected: expected.into(),
    }
}

/// Whether `s` is an identifier in netmap's sense: possibly empty, made of
/// ASCII letters, digits and `_`.
fn is_ident(s: &str) -> bool {
    s.bytes().all(is_ident_byte)
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}
