//! The grammar's productions, one function each: prefix, port name (and its
//! pipe), ring selection, the `/flags` and `@N` modifiers, and the split of
//! the options (each read in [`options`](super::options)).

use super::{invalid, is_ident_byte, Invalid, PipeRole, PipeSpec, PortKind, PortSpec, Result, RingSelect};
use crate::ffi;

/// The longest `nr_name`, in bytes: the kernel's buffer less its NUL.
const MAX_NAME: usize = ffi::NETMAP_REQ_IFNAMSIZ - 1;

/// Ring numbers must be below this (the ring-id mask of the legacy API).
const RING_LIMIT: u16 = ffi::NETMAP_RING_MASK;

/// The bytes that end the port name.
const SEPARATORS: &[u8] = b"-*^/@";

const PREFIX_EXPECTED: &str =
    "one of the prefixes netmap:, valeX:, emu:, afpacket:, afxdp:, or a plain interface name";
const FLAGS_EXPECTED: &str = "one of the flags x z t r R T";
const AFTER_RINGS_EXPECTED: &str = "`/` and flags, `@` and a memory id or an option, or the end of the name";

/// The `nr_flags` bit of a flag letter.
pub(super) fn flag_bit(c: u8) -> Option<u64> {
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

/// A number read from the text: its value (`None` past `u64::MAX`) and
/// where its digits end.
pub(super) struct Number {
    pub(super) value: Option<u64>,
    pub(super) end: usize,
}

/// One parse of one name.
pub(super) struct Parser<'a> {
    /// The name as given: errors quote it and count in it.
    pub(super) input: &'a str,
    /// The normalized name being read.
    pub(super) text: &'a str,
    pub(super) b: &'a [u8],
    /// How many bytes were put before `input` to make `text`.
    pub(super) shift: usize,
}

/// What the prefix said: `prefix`.
struct Prefix<'a> {
    kind: PortKind,
    /// The text before the first `:`.
    scope: &'a str,
    /// Whether the prefix is left out of `nr_name` (all but `valeX:`).
    skip: bool,
}

/// The port name and its pipe: `port`.
struct Port {
    nr_name: String,
    ifname: String,
    pipe: Option<PipeSpec>,
    /// Where the port name ends.
    end: usize,
}

/// The flags and memory id after the rings, and where the options start.
struct Modifiers {
    flags: u64,
    mem_id: u16,
    /// The `@` before the first option.
    options_at: Option<usize>,
}

/// Lexing: positions, bytes and numbers.
impl Parser<'_> {
    /// An error at byte `at` of `text`.
    pub(super) fn err(&self, at: usize, expected: impl Into<String>) -> Invalid {
        invalid(self.input, at.saturating_sub(self.shift), expected)
    }

    pub(super) fn peek(&self, at: usize) -> Option<u8> {
        self.b.get(at).copied()
    }

    fn digit_at(&self, at: usize) -> bool {
        self.peek(at).is_some_and(|c| c.is_ascii_digit())
    }

    /// Where the first of `stops` at or after `from` and before `to` is, or `to`.
    pub(super) fn find(&self, from: usize, to: usize, stops: &[u8]) -> usize {
        self.b[from..to]
            .iter()
            .position(|c| stops.contains(c))
            .map_or(to, |i| from + i)
    }

    /// Reads the decimal digits starting at `at`.
    pub(super) fn number(&self, at: usize) -> Number {
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
}

/// The productions.
impl Parser<'_> {
    /// `name`: the whole port name.
    pub(super) fn parse(&self) -> Result<PortSpec> {
        let prefix = self.prefix()?;
        let port = self.port(&prefix)?;
        let sockets = prefix.kind.is_socket();
        let (rings, pos) = self.rings(port.end, sockets)?;
        let mods = self.modifiers(pos)?;
        let mut spec = PortSpec {
            text: self.text.to_owned(),
            kind: prefix.kind,
            nr_name: port.nr_name,
            ifname: port.ifname,
            pipe: port.pipe,
            rings,
            flags: mods.flags,
            mem_id: mods.mem_id,
            conf: Default::default(),
            offset: None,
            extmem: None,
        };
        if let Some(at) = mods.options_at {
            self.options(at + 1, &mut spec)?;
        }
        Ok(spec)
    }

    /// `prefix`: everything before the first `:`.
    fn prefix(&self) -> Result<Prefix<'_>> {
        let colon = self.text.find(':').unwrap_or(self.b.len());
        let scope = &self.text[..colon];
        let kind = match scope {
            "netmap" => PortKind::Netmap,
            "emu" => PortKind::Emu,
            "afpacket" => PortKind::AfPacket,
            "afxdp" => PortKind::AfXdp,
            _ if scope.starts_with("vale") => {
                if let Some(i) = scope.bytes().skip(4).position(|c| !is_ident_byte(c)) {
                    return Err(self.err(4 + i, "a VALE switch name of letters, digits and `_`, then `:`"));
                }
                let bridge = scope.to_owned();
                return Ok(Prefix {
                    kind: PortKind::Vale { bridge },
                    scope,
                    skip: false,
                });
            }
            _ => return Err(self.err(0, PREFIX_EXPECTED)),
        };
        Ok(Prefix {
            kind,
            scope,
            skip: true,
        })
    }

    /// `port`: the name up to the first separator, with its pipe, if any.
    fn port(&self, prefix: &Prefix<'_>) -> Result<Port> {
        let start = prefix.scope.len() + 1;
        let end = self.find(start, self.b.len(), SEPARATORS);
        if start == end {
            let what = if self.shift > 0 {
                "a port name".to_owned()
            } else {
                format!("a port name after `{}:`", prefix.scope)
            };
            return Err(self.err(start, what));
        }
        if prefix.kind.is_socket() {
            self.interface_only(start, end, prefix.scope)?;
        }
        let pipe_at = self.find(start, end, b"{}");
        let pipe = self.pipe(start, pipe_at, end)?;
        let name_start = if prefix.skip { start } else { 0 };
        self.name_fits(prefix, name_start, end)?;
        Ok(Port {
            nr_name: self.text[name_start..end].to_owned(),
            ifname: self.text[name_start..pipe_at].to_owned(),
            pipe,
            end,
        })
    }

    /// Refuses pipes and VALE ports in the port name `start..end` of a
    /// socket prefix (`scope`: `afpacket`, `afxdp`).
    fn interface_only(&self, start: usize, end: usize, scope: &str) -> Result<()> {
        let portion = &self.text[start..end];
        if let Some(i) = portion.find(['{', '}']) {
            return Err(self.err(
                start + i,
                format!("an interface name without a pipe (`{scope}:` reaches real interfaces only)"),
            ));
        }
        if let Some(i) = portion.find(':') {
            return Err(self.err(
                start + i,
                format!("an interface name without `:` (`{scope}:` cannot reach VALE switches)"),
            ));
        }
        Ok(())
    }

    /// `[("{" | "}") pipeid]` at `at` (`end` if there is none), in the port
    /// name that starts at `start` and ends at `end`.
    fn pipe(&self, start: usize, at: usize, end: usize) -> Result<Option<PipeSpec>> {
        let (role, c) = match self.peek(at).filter(|_| at < end) {
            Some(b'{') => (PipeRole::Master, '{'),
            Some(_) => (PipeRole::Slave, '}'),
            None => return Ok(None),
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
        Ok(Some(PipeSpec { role, id }))
    }

    /// Checks that `nr_name`, `name_start..end`, fits the kernel's buffer.
    fn name_fits(&self, prefix: &Prefix<'_>, name_start: usize, end: usize) -> Result<()> {
        if end - name_start <= MAX_NAME {
            return Ok(());
        }
        let what = if prefix.skip {
            format!("a port name of at most {MAX_NAME} bytes")
        } else {
            let scope = prefix.scope;
            format!("a port name of at most {MAX_NAME} bytes, `{scope}:` included")
        };
        Err(self.err(name_start + MAX_NAME, what))
    }

    /// `rings` at `pos`: the selection and where it ends.
    fn rings(&self, pos: usize, sockets: bool) -> Result<(RingSelect, usize)> {
        match self.peek(pos) {
            Some(c @ (b'^' | b'*')) if sockets => Err(self.err(
                pos,
                format!(
                    "`-N`, `/`, `@` or the end of the name: `{}:` has no host rings, \
                     so `{}` is refused",
                    &self.text[..self.text.find(':').unwrap_or(0)],
                    c as char
                ),
            )),
            Some(b'^') if self.digit_at(pos + 1) => {
                let (n, end) = self.ring_number(pos + 1)?;
                Ok((RingSelect::OneHost(n), end))
            }
            Some(b'^') => Ok((RingSelect::Host, pos + 1)),
            Some(b'*') => Ok((RingSelect::NicAndHost, pos + 1)),
            Some(b'-') if self.digit_at(pos + 1) => {
                let (n, end) = self.ring_number(pos + 1)?;
                Ok((RingSelect::OneNic(n), end))
            }
            Some(b'-') => Err(self.err(pos + 1, "a ring number after `-`")),
            _ => Ok((RingSelect::AllNic, pos)),
        }
    }

    /// `{modifier}` from `pos`: flags and memory id, in any order, until the
    /// options or the end.
    fn modifiers(&self, mut pos: usize) -> Result<Modifiers> {
        let len = self.b.len();
        let mut mods = Modifiers {
            flags: 0,
            mem_id: 0,
            options_at: None,
        };
        loop {
            match self.peek(pos) {
                None => return Ok(mods),
                Some(b'/') => pos = self.flags(pos + 1, &mut mods.flags)?,
                Some(b'@') if self.digit_at(pos + 1) => pos = self.mem_id(pos + 1, &mut mods.mem_id)?,
                Some(b'@') if pos + 1 == len => {
                    return Err(self.err(len, "a memory id or an option after `@`"));
                }
                Some(b'@') => {
                    mods.options_at = Some(pos);
                    return Ok(mods);
                }
                Some(_) => return Err(self.err(pos, AFTER_RINGS_EXPECTED)),
            }
        }
    }

    /// The flag letters after a `/`, from `first` up to an `@` or the end,
    /// into `flags`; returns where they end.
    fn flags(&self, first: usize, flags: &mut u64) -> Result<usize> {
        let mut pos = first;
        loop {
            match self.peek(pos) {
                None if pos == first => return Err(self.err(pos, format!("{FLAGS_EXPECTED} after `/`"))),
                None | Some(b'@') => return Ok(pos),
                Some(c) => {
                    let bit = flag_bit(c).ok_or_else(|| self.err(pos, FLAGS_EXPECTED))?;
                    *flags |= bit;
                    pos += 1;
                }
            }
        }
    }

    /// The memory id whose first digit is at `at` (after its `@`), into
    /// `mem_id`, which it must agree with if already given; returns where it
    /// ends.
    fn mem_id(&self, at: usize, mem_id: &mut u16) -> Result<usize> {
        let n = self.number(at);
        let id = match n.value.and_then(|v| u16::try_from(v).ok()) {
            Some(v) if v > 0 => v,
            _ => return Err(self.err(at, "a memory id from 1 to 65535")),
        };
        if *mem_id != 0 && *mem_id != id {
            return Err(self.err(at, format!("the memory id given before ({mem_id})")));
        }
        *mem_id = id;
        Ok(n.end)
    }

    /// `{"@" option}`: the options from `start` (after the first `@`) to the
    /// end, each read into `spec`.
    fn options(&self, mut start: usize, spec: &mut PortSpec) -> Result<()> {
        let len = self.b.len();
        loop {
            let end = self.find(start, len, b"@");
            self.option(start, end, spec)?;
            if end == len {
                return Ok(());
            }
            start = end + 1;
        }
    }
}
