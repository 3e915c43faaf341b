//! The regions this process has attached, and the port names of requests,
//! taken from the typed [`PortSpec`].

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Weak};

use super::pipe::{self, Kind};
use super::region::Region;
use super::shm::Guard;
use super::{DEFAULT_SLOTS, MAX_RINGS, MAX_SLOTS, MIN_SLOTS};
use crate::backend::errno;
use crate::ffi::nmreq_register;
use crate::spec::{PipeRole, PipeSpec, PortSpec};

/// Which end of a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// `NAME{ID`, or the only end of a loopback port `NAME`.
    Master = 0,
    /// `NAME}ID`.
    Slave = 1,
}

/// The port a request names: the region (parent) it lives in, and the
/// name and kind of its record there.
#[derive(Debug)]
pub(super) struct PortName {
    /// The parent: `NAME` of `NAME{ID`, or the switch `valeX` of
    /// `valeX:PORT`.
    pub(super) parent: String,
    /// The record's name: a pipe's id (`PORT{ID` on a switch), a VALE
    /// port's name, nothing for a loopback port (the parent itself).
    record: String,
    kind: Kind,
    pub(super) end: End,
}

impl PortName {
    /// The port `spec` names: the pipe end of its `pipe`, `{` making a
    /// master end and `}` a slave end, of parent `ifname`; a name without
    /// a pipe names the parent itself, which this kernel offers as a
    /// loopback port, or, for `valeX:PORT`, port `PORT` of switch `valeX`.
    /// An empty parent, port or pipe id is `EINVAL`, as the kernel answers
    /// such a name.
    pub(super) fn of(spec: &PortSpec) -> io::Result<PortName> {
        if spec.ifname.is_empty() {
            return Err(errno(libc::EINVAL));
        }
        let (parent, port) = match vale_parts(&spec.ifname) {
            Some((_, "")) => return Err(errno(libc::EINVAL)),
            Some((switch, port)) => (switch, Some(port)),
            None => (spec.ifname.as_str(), None),
        };
        let (record, kind, end) = match &spec.pipe {
            None => match port {
                Some(port) => (port.to_owned(), Kind::Vale, End::Master),
                None => (String::new(), Kind::Loopback, End::Master),
            },
            Some(p) if p.id.is_empty() => return Err(errno(libc::EINVAL)),
            Some(PipeSpec { role, id }) => (
                match port {
                    Some(port) => format!("{port}{{{id}"),
                    None => id.clone(),
                },
                Kind::Pipe,
                match role {
                    PipeRole::Master => End::Master,
                    PipeRole::Slave => End::Slave,
                },
            ),
        };
        Ok(PortName {
            parent: parent.to_owned(),
            record,
            kind,
            end,
        })
    }

    /// What kind of record the port is.
    pub(super) fn kind(&self) -> Kind {
        self.kind
    }

    /// The name of its record in the parent's region.
    pub(super) fn record(&self) -> &str {
        &self.record
    }

    /// The live record of the port, if there is one.
    pub(super) fn find(&self, region: &Region, g: &Guard<'_>) -> Option<u32> {
        pipe::find(region, g, self.record(), self.kind())
    }
}

/// `(switch, port)` of a VALE name `valeX:PORT` (`X` letters, digits and
/// `_`, maybe empty, as netmap's switch names are).
pub(super) fn vale_parts(name: &str) -> Option<(&str, &str)> {
    let (switch, port) = name.split_once(':')?;
    let id = switch.strip_prefix("vale")?;
    id.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        .then_some((switch, port))
}

/// The regions this process has attached, by parent name. Entries are
/// weak: a region stays attached while a handle or a mapping of this
/// process holds it; dead entries are pruned when new ones are made.
pub(super) struct Registry {
    regions: HashMap<String, (u16, Weak<Region>)>,
    next_mem_id: u16,
}

impl Registry {
    pub(super) fn new() -> Self {
        Registry {
            regions: HashMap::new(),
            next_mem_id: 1,
        }
    }

    /// How many regions are listed (dead entries included).
    pub(super) fn count(&self) -> usize {
        self.regions.len()
    }

    /// The region of parent `parent`, attached if this process has not
    /// yet (and made if no process has it).
    pub(super) fn region(&mut self, parent: &str) -> io::Result<Arc<Region>> {
        if let Some(r) = self.regions.get(parent).and_then(|(_, w)| w.upgrade()) {
            return Ok(r);
        }
        self.regions.retain(|_, (_, w)| w.strong_count() > 0);
        let mem_id = self.fresh_mem_id()?;
        let region = Arc::new(Region::attach(parent, mem_id)?);
        region.reclaim_stale()?;
        self.regions
            .insert(parent.to_owned(), (mem_id, Arc::downgrade(&region)));
        Ok(region)
    }

    /// The next memory id that no live region uses (ids count up from 1).
    fn fresh_mem_id(&mut self) -> io::Result<u16> {
        let live: HashSet<u16> = self.regions.values().map(|(id, _)| *id).collect();
        for _ in 0..u16::MAX {
            let id = self.next_mem_id;
            self.next_mem_id = self.next_mem_id.checked_add(1).unwrap_or(1);
            if !live.contains(&id) {
                return Ok(id);
            }
        }
        Err(errno(libc::ENOMEM))
    }
}

/// Ring pairs and slots per ring of a new pipe, from its first REGISTER: the
/// larger of the TX and RX values (a pipe end has as many TX as RX rings, of
/// equal size), 0 meaning the default, clamped into range as the kernel does.
pub(super) fn pipe_shape(req: &nmreq_register) -> (u32, u32) {
    let rings = u32::from(req.nr_tx_rings.max(req.nr_rx_rings)).clamp(1, MAX_RINGS);
    let slots = match req.nr_tx_slots.max(req.nr_rx_slots) {
        0 => DEFAULT_SLOTS,
        n => n.clamp(MIN_SLOTS, MAX_SLOTS),
    };
    (rings, slots)
}
