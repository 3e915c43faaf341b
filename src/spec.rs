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
//! The grammar is that of libnetmap's `nmport_open`, plus the `emu:` and
//! `afpacket:` prefixes and plain interface names (see below).
//!
//! # Grammar
//!
//! ```text
//! name      = prefix port [rings] {modifier} {"@" option}
//!           | port [rings] {modifier} {"@" option}      ; plain: no ':' before the first '@'
//! prefix    = "netmap:" | "emu:" | "afpacket:" | "vale" ident ":"
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
//! `afpacket:` reaches real interfaces only: pipes, host rings (`^`, `*`) and
//! VALE ports (any `:` in the name) are refused there.
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

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::ffi;

/// The longest `nr_name`, in bytes: the kernel's buffer less its NUL.
const MAX_NAME: usize = ffi::NETMAP_REQ_IFNAMSIZ - 1;

/// Ring numbers must be below this (the ring-id mask of the legacy API).
const RING_LIMIT: u16 = ffi::NETMAP_RING_MASK;

/// The bytes that end the port name.
const SEPARATORS: &[u8] = b"-*^/@";

const PREFIX_EXPECTED: &str =
    "one of the prefixes netmap:, valeX:, emu:, afpacket:, or a plain interface name";
const FLAGS_EXPECTED: &str = "one of the flags x z t r R T";
const AFTER_RINGS_EXPECTED: &str = "`/` and flags, `@` and a memory id or an option, or the end of the name";
const OPTIONS_EXPECTED: &str = "one of the options conf, extmem, offset";

/// What kind of port a name designates, from its prefix.
///
/// ```
/// use netmap_rs::spec::{parse, PortKind};
///
/// assert_eq!(parse("eth0")?.kind, PortKind::Netmap);
/// assert_eq!(parse("valeA:p1")?.kind, PortKind::Vale { bridge: "valeA".into() });
/// assert_eq!(parse("emu:pipe{1")?.kind, PortKind::Emu);
/// assert_eq!(parse("afpacket:eth0")?.kind, PortKind::AfPacket);
/// # Ok::<(), netmap_rs::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// Which end of a netmap pipe a name opens.
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
/// ```
/// use netmap_rs::spec::{parse, PipeRole, PipeSpec};
///
/// let s = parse("netmap:eth0{tap_1")?;
/// assert_eq!(s.pipe, Some(PipeSpec { role: PipeRole::Master, id: "tap_1".into() }));
/// # Ok::<(), netmap_rs::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeSpec {
    /// Master (`{`) or slave (`}`).
    pub role: PipeRole,
    /// The pipe id: letters, digits and `_`, not empty.
    pub id: String,
}

/// Which rings a port binds, from the suffix after the port name.
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
/// ```
/// use netmap_rs::spec::{parse, Conf};
///
/// let s = parse("vale0:p@conf:rings=2,tx_rings=4,slots=512")?;
/// assert_eq!(s.conf, Conf {
///     tx_rings: Some(4),
///     rx_rings: Some(2),
///     tx_slots: Some(512),
///     rx_slots: Some(512),
///     ..Conf::default()
/// });
/// # Ok::<(), netmap_rs::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
/// As in libnetmap, only `initial` and `bits` can be written; `maxoff` is set
/// to `initial` and `mingap` to 0.
///
/// ```
/// use netmap_rs::spec::{parse, OffsetOpt};
///
/// let s = parse("eth0@offset:initial=64,bits=8")?;
/// assert_eq!(s.offset, Some(OffsetOpt { initial: 64, maxoff: 64, bits: 8, mingap: 0 }));
/// assert_eq!(parse("eth0@offset=32")?.offset.unwrap().bits, 0);
/// # Ok::<(), netmap_rs::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// The `@extmem:` option: netmap memory in a file the user maps.
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// A parsed port name. See the [module docs](self) for the grammar.
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
            PortKind::Emu | PortKind::AfPacket => false,
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
    fn from_str(s: &str) -> Result<Self> {
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
pub fn parse(name: &str) -> Result<PortSpec> {
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

/// Builds the error for `name` at byte `position` of `name`.
fn invalid(name: &str, position: usize, expected: impl Into<String>) -> Error {
    Error::InvalidPortSpec {
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

/// The `nr_flags` bit of a flag letter.
fn flag_bit(c: u8) -> Option<u64> {
    Some(match c {
        b'x' => ffi::NR_EXCLUSIVE,
        b'z' => ffi::NR_ZCOPY_MON,
        b't' => ffi::NR_MONITOR_TX,
        b'r' => ffi::NR_MONITOR_RX,
        b'R' => ffi::NR_RX_RINGS_ONLY,
        b'T' => ffi::NR_TX_RINGS_ONLY,
        _ => return None,
    })
}

/// The options and their keys. The first key of `extmem` and `offset` is
/// their default key (the one `NAME=value` sets) and is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OptKind {
    Conf,
    Extmem,
    Offset,
}

impl OptKind {
    fn name(self) -> &'static str {
        match self {
            OptKind::Conf => "conf",
            OptKind::Extmem => "extmem",
            OptKind::Offset => "offset",
        }
    }

    fn keys(self) -> &'static [&'static str] {
        match self {
            OptKind::Conf => &[
                "rings",
                "host_rings",
                "slots",
                "tx_rings",
                "rx_rings",
                "host_tx_rings",
                "host_rx_rings",
                "tx_slots",
                "rx_slots",
            ],
            OptKind::Extmem => &[
                "file",
                "if_num",
                "if_size",
                "ring_num",
                "ring_size",
                "buf_num",
                "buf_size",
            ],
            OptKind::Offset => &["initial", "bits"],
        }
    }

    /// Whether the option has a default, required, first key.
    fn has_default_key(self) -> bool {
        self != OptKind::Conf
    }
}

/// Where each key's value lies in the text: `(start, end)` byte offsets.
type KeyValues = [Option<(usize, usize)>; 9];

/// A number read from the text: its value (`None` past `u64::MAX`) and
/// where its digits end.
struct Number {
    value: Option<u64>,
    end: usize,
}

/// One parse of one name.
struct Parser<'a> {
    /// The name as given: errors quote it and count in it.
    input: &'a str,
    /// The normalized name being read.
    text: &'a str,
    b: &'a [u8],
    /// How many bytes were put before `input` to make `text`.
    shift: usize,
}

impl Parser<'_> {
    /// An error at byte `at` of `text`.
    fn err(&self, at: usize, expected: impl Into<String>) -> Error {
        invalid(self.input, at.saturating_sub(self.shift), expected)
    }

    fn peek(&self, at: usize) -> Option<u8> {
        self.b.get(at).copied()
    }

    fn digit_at(&self, at: usize) -> bool {
        self.peek(at).is_some_and(|c| c.is_ascii_digit())
    }

    /// Reads the decimal digits starting at `at`.
    fn number(&self, at: usize) -> Number {
        let mut value = Some(0u64);
        let mut end = at;
        while let Some(c) = self.peek(end).filter(u8::is_ascii_digit) {
            value = value
                .and_then(|v| v.checked_mul(10))
                .and_then(|v| v.checked_add(u64::from(c - b'0')));
            end += 1;
        }
        Number { value, end }
    }

    /// Reads a ring number (below [`RING_LIMIT`]) whose first digit is at `at`.
    fn ring_number(&self, at: usize) -> Result<(u16, usize)> {
        let n = self.number(at);
        match n.value.and_then(|v| u16::try_from(v).ok()) {
            Some(v) if v < RING_LIMIT => Ok((v, n.end)),
            _ => Err(self.err(at, format!("a ring number below {RING_LIMIT}"))),
        }
    }

    /// Reads an option value in `start..end` as a number of at most `max`.
    fn value(&self, start: usize, end: usize, key: &str, max: u64) -> Result<u64> {
        if let Some(bad) = (start..end).find(|&i| !self.b[i].is_ascii_digit()) {
            return Err(self.err(bad, format!("a decimal number as the value of `{key}`")));
        }
        match self.number(start).value {
            Some(v) if v <= max => Ok(v),
            _ => Err(self.err(start, format!("a value of `{key}` of at most {max}"))),
        }
    }

    fn parse(&self) -> Result<PortSpec> {
        let len = self.b.len();

        // The prefix: everything before the first ':'.
        let colon = self.text.find(':').unwrap_or(len);
        let scope = &self.text[..colon];
        let (kind, skip) = match scope {
            "netmap" => (PortKind::Netmap, true),
            "emu" => (PortKind::Emu, true),
            "afpacket" => (PortKind::AfPacket, true),
            _ if scope.starts_with("vale") => {
                if let Some(i) = scope.bytes().skip(4).position(|c| !is_ident_byte(c)) {
                    return Err(self.err(4 + i, "a VALE switch name of letters, digits and `_`, then `:`"));
                }
                (
                    PortKind::Vale {
                        bridge: scope.to_owned(),
                    },
                    false,
                )
            }
            _ => return Err(self.err(0, PREFIX_EXPECTED)),
        };
        let afpacket = kind == PortKind::AfPacket;

        // The port name: up to the first separator.
        let start = colon + 1;
        let end = self.b[start..]
            .iter()
            .position(|c| SEPARATORS.contains(c))
            .map_or(len, |i| start + i);
        if start == end {
            let what = if self.shift > 0 {
                "a port name".to_owned()
            } else {
                format!("a port name after `{scope}:`")
            };
            return Err(self.err(start, what));
        }
        let portion = &self.text[start..end];
        if afpacket {
            if let Some(i) = portion.find(['{', '}']) {
                return Err(self.err(
                    start + i,
                    "an interface name without a pipe (`afpacket:` reaches real interfaces only)",
                ));
            }
            if let Some(i) = portion.find(':') {
                return Err(self.err(
                    start + i,
                    "an interface name without `:` (`afpacket:` cannot reach VALE switches)",
                ));
            }
        }
        let (pipe, pipe_at) = match portion.find(['{', '}']) {
            None => (None, end),
            Some(i) => {
                let at = start + i;
                let (role, c) = if self.b[at] == b'{' {
                    (PipeRole::Master, '{')
                } else {
                    (PipeRole::Slave, '}')
                };
                if at == start {
                    return Err(self.err(at, format!("a port name before `{c}`")));
                }
                if at + 1 == end {
                    return Err(self.err(end, format!("a pipe id after `{c}`")));
                }
                if let Some(j) = self.b[at + 1..end].iter().position(|&b| !is_ident_byte(b)) {
                    return Err(self.err(
                        at + 1 + j,
                        "a pipe id of letters, digits and `_` (the only `{` or `}` in the name)",
                    ));
                }
                let id = self.text[at + 1..end].to_owned();
                (Some(PipeSpec { role, id }), at)
            }
        };
        let name_start = if skip { start } else { 0 };
        if end - name_start > MAX_NAME {
            let what = if skip {
                format!("a port name of at most {MAX_NAME} bytes")
            } else {
                format!("a port name of at most {MAX_NAME} bytes, `{scope}:` included")
            };
            return Err(self.err(name_start + MAX_NAME, what));
        }
        let nr_name = self.text[name_start..end].to_owned();
        let ifname = self.text[name_start..pipe_at].to_owned();

        // The ring suffix.
        let mut pos = end;
        let rings = match self.peek(pos) {
            Some(c @ (b'^' | b'*')) if afpacket => {
                return Err(self.err(
                    pos,
                    format!(
                        "`-N`, `/`, `@` or the end of the name: `afpacket:` has no host rings, \
                         so `{}` is refused",
                        c as char
                    ),
                ));
            }
            Some(b'^') => {
                pos += 1;
                if self.digit_at(pos) {
                    let (n, e) = self.ring_number(pos)?;
                    pos = e;
                    RingSelect::OneHost(n)
                } else {
                    RingSelect::Host
                }
            }
            Some(b'*') => {
                pos += 1;
                RingSelect::NicAndHost
            }
            Some(b'-') => {
                pos += 1;
                if !self.digit_at(pos) {
                    return Err(self.err(pos, "a ring number after `-`"));
                }
                let (n, e) = self.ring_number(pos)?;
                pos = e;
                RingSelect::OneNic(n)
            }
            _ => RingSelect::AllNic,
        };

        // Flags and memory id, in any order, until the options.
        let mut flags = 0u64;
        let mut mem_id = 0u16;
        let options_at = loop {
            match self.peek(pos) {
                None => break None,
                Some(b'/') => {
                    pos += 1;
                    let first = pos;
                    loop {
                        match self.peek(pos) {
                            None if pos == first => {
                                return Err(self.err(pos, format!("{FLAGS_EXPECTED} after `/`")))
                            }
                            None | Some(b'@') => break,
                            Some(c) => match flag_bit(c) {
                                Some(bit) => {
                                    flags |= bit;
                                    pos += 1;
                                }
                                None => return Err(self.err(pos, FLAGS_EXPECTED)),
                            },
                        }
                    }
                }
                Some(b'@') if self.digit_at(pos + 1) => {
                    let n = self.number(pos + 1);
                    let id = match n.value.and_then(|v| u16::try_from(v).ok()) {
                        Some(v) if v > 0 => v,
                        _ => return Err(self.err(pos + 1, "a memory id from 1 to 65535")),
                    };
                    if mem_id != 0 && mem_id != id {
                        return Err(self.err(pos + 1, format!("the memory id given before ({mem_id})")));
                    }
                    mem_id = id;
                    pos = n.end;
                }
                Some(b'@') if pos + 1 == len => {
                    return Err(self.err(len, "a memory id or an option after `@`"));
                }
                Some(b'@') => break Some(pos),
                Some(_) => return Err(self.err(pos, AFTER_RINGS_EXPECTED)),
            }
        };

        let mut spec = PortSpec {
            text: self.text.to_owned(),
            kind,
            nr_name,
            ifname,
            pipe,
            rings,
            flags,
            mem_id,
            conf: Conf::default(),
            offset: None,
            extmem: None,
        };

        // The options, each after an '@'.
        if let Some(at) = options_at {
            let mut opt_start = at + 1;
            loop {
                let opt_end = self.b[opt_start..]
                    .iter()
                    .position(|&c| c == b'@')
                    .map_or(len, |i| opt_start + i);
                self.option(opt_start, opt_end, &mut spec)?;
                if opt_end == len {
                    break;
                }
                opt_start = opt_end + 1;
            }
        }
        Ok(spec)
    }

    /// Parses the option in `start..end` (after its `@`) into `spec`.
    fn option(&self, start: usize, end: usize, spec: &mut PortSpec) -> Result<()> {
        if start == end {
            return Err(self.err(start, format!("{OPTIONS_EXPECTED} after `@`")));
        }
        let name_end = self.b[start..end]
            .iter()
            .position(|&c| c == b':' || c == b'=')
            .map_or(end, |i| start + i);
        let kind = match &self.text[start..name_end] {
            "conf" => OptKind::Conf,
            "extmem" => OptKind::Extmem,
            "offset" => OptKind::Offset,
            "share" => {
                return Err(self.err(
                    start,
                    format!(
                        "{OPTIONS_EXPECTED} (`share` asks the kernel for another port's memory \
                         id; give that id as `@N` instead)"
                    ),
                ))
            }
            _ => return Err(self.err(start, OPTIONS_EXPECTED)),
        };
        let name = kind.name();
        let repeated = match kind {
            OptKind::Conf => false,
            OptKind::Extmem => spec.extmem.is_some(),
            OptKind::Offset => spec.offset.is_some(),
        };
        if repeated {
            return Err(self.err(
                start,
                format!("{OPTIONS_EXPECTED}, each of extmem and offset once (`{name}` was already given)"),
            ));
        }

        let mut vals: KeyValues = [None; 9];
        match self.peek(name_end).filter(|_| name_end < end) {
            None => {
                let what = if kind.has_default_key() {
                    format!("`=` or `:` after option `{name}`")
                } else {
                    format!("`:` after option `{name}`")
                };
                return Err(self.err(name_end, what));
            }
            Some(b'=') => {
                if !kind.has_default_key() {
                    return Err(self.err(
                        name_end,
                        format!("`:` after option `{name}` (it has no default key for `=`)"),
                    ));
                }
                if name_end + 1 == end {
                    return Err(self.err(end, format!("a value after `{name}=`")));
                }
                vals[0] = Some((name_end + 1, end));
            }
            Some(_) => self.keys(kind, name_end + 1, end, &mut vals)?,
        }
        if kind.has_default_key() && vals[0].is_none() {
            let key = kind.keys()[0];
            return Err(self.err(end, format!("the key `{key}`, which option `{name}` requires")));
        }

        let keys = kind.keys();
        let num = |i: usize, max: u64| -> Result<Option<u64>> {
            vals[i].map(|(s, e)| self.value(s, e, keys[i], max)).transpose()
        };
        let narrow16 = |v: Option<u64>| v.and_then(|v| u16::try_from(v).ok());
        let narrow32 = |v: Option<u64>| v.and_then(|v| u32::try_from(v).ok());
        const U16: u64 = u16::MAX as u64;
        const U32: u64 = u32::MAX as u64;
        match kind {
            OptKind::Conf => {
                // The shorthands first, so that the specific keys win.
                let c = &mut spec.conf;
                if let Some(v) = narrow16(num(0, U16)?) {
                    c.tx_rings = Some(v);
                    c.rx_rings = Some(v);
                }
                if let Some(v) = narrow16(num(1, U16)?) {
                    c.host_tx_rings = Some(v);
                    c.host_rx_rings = Some(v);
                }
                if let Some(v) = narrow32(num(2, U32)?) {
                    c.tx_slots = Some(v);
                    c.rx_slots = Some(v);
                }
                let specific = [
                    (3, &mut c.tx_rings),
                    (4, &mut c.rx_rings),
                    (5, &mut c.host_tx_rings),
                    (6, &mut c.host_rx_rings),
                ];
                for (i, field) in specific {
                    if let Some(v) = narrow16(num(i, U16)?) {
                        *field = Some(v);
                    }
                }
                for (i, field) in [(7, &mut c.tx_slots), (8, &mut c.rx_slots)] {
                    if let Some(v) = narrow32(num(i, U32)?) {
                        *field = Some(v);
                    }
                }
            }
            OptKind::Extmem => {
                let file = vals[0].map_or("", |(s, e)| &self.text[s..e]).to_owned();
                spec.extmem = Some(ExtmemOpt {
                    file,
                    if_num: num(1, U32)?,
                    if_size: num(2, U32)?,
                    ring_num: num(3, U32)?,
                    ring_size: num(4, U32)?,
                    buf_num: num(5, U32)?,
                    buf_size: num(6, U32)?,
                });
            }
            OptKind::Offset => {
                let initial = num(0, u64::MAX)?.unwrap_or(0);
                spec.offset = Some(OffsetOpt {
                    initial,
                    maxoff: initial,
                    bits: num(1, u64::MAX)?.unwrap_or(0),
                    mingap: 0,
                });
            }
        }
        Ok(())
    }

    /// Reads `key=value,...` in `start..end` for option `kind` into `vals`.
    fn keys(&self, kind: OptKind, start: usize, end: usize, vals: &mut KeyValues) -> Result<()> {
        if start == end {
            return Ok(());
        }
        let name = kind.name();
        let keys = kind.keys();
        let mut item = start;
        loop {
            let item_end = self.b[item..end]
                .iter()
                .position(|&c| c == b',')
                .map_or(end, |i| item + i);
            let key_end = self.b[item..item_end]
                .iter()
                .position(|&c| c == b'=')
                .map_or(item_end, |i| item + i);
            let key = self.text[item..key_end].replace('-', "_");
            let Some(k) = keys.iter().position(|&k| k == key) else {
                return Err(self.err(
                    item,
                    format!("one of the keys {} of option `{name}`", keys.join(", ")),
                ));
            };
            if vals[k].is_some() {
                return Err(self.err(
                    item,
                    format!("each key once in option `{name}` (`{key}` was already given)"),
                ));
            }
            if key_end == item_end {
                return Err(self.err(key_end, format!("`=` after option key `{key}`")));
            }
            if key_end + 1 == item_end {
                return Err(self.err(item_end, format!("a value after `{key}=`")));
            }
            vals[k] = Some((key_end + 1, item_end));
            if item_end == end {
                return Ok(());
            }
            item = item_end + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(name: &str) -> usize {
        match parse(name) {
            Err(Error::InvalidPortSpec { position, .. }) => position,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn identifiers() {
        assert!(is_ident(""));
        assert!(is_ident("a_Z09"));
        assert!(!is_ident("a-b"));
        assert!(!is_ident("é"));
    }

    #[test]
    fn flag_letters() {
        let all: u64 = b"xztrRT".iter().map(|&c| flag_bit(c).unwrap()).sum();
        assert_eq!(all, 0x100 | 0x200 | 0x400 | 0x800 | 0x2000 | 0x4000);
        assert_eq!(flag_bit(b'X'), None);
    }

    #[test]
    fn numbers_saturate_to_none() {
        let text = "18446744073709551616x";
        let p = Parser {
            input: text,
            text,
            b: text.as_bytes(),
            shift: 0,
        };
        let n = p.number(0);
        assert_eq!(n.value, None);
        assert_eq!(n.end, text.len() - 1);
        let n = p.number(1);
        assert_eq!(n.value, Some(8_446_744_073_709_551_616));
    }

    #[test]
    fn plain_names_shift_positions() {
        assert_eq!(pos("eth0-x"), 5);
        assert_eq!(pos("netmap:eth0-x"), 12);
        assert_eq!(pos(""), 0);
        assert_eq!(pos("@conf:"), 0);
    }

    #[test]
    fn every_key_table_fits_the_value_array() {
        for k in [OptKind::Conf, OptKind::Extmem, OptKind::Offset] {
            assert!(k.keys().len() <= KeyValues::default().len());
        }
    }

    #[test]
    fn conf_shorthands_lose_to_specific_keys_in_any_order() {
        let a = parse("x@conf:tx_slots=7,slots=9").unwrap().conf;
        let b = parse("x@conf:slots=9,tx_slots=7").unwrap().conf;
        assert_eq!(a, b);
        assert_eq!(a.tx_slots, Some(7));
        assert_eq!(a.rx_slots, Some(9));
    }
}
