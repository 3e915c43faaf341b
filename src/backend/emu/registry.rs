//! The process-global registry of pipes and regions, and the port names
//! that key it, taken from the typed [`PortSpec`].

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Weak};

use super::pipe::Pipe;
use super::region::Region;
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

/// The port a request names: the registry's key.
#[derive(Debug)]
pub(super) struct PortName {
    pub(super) parent: String,
    /// The pipe id, or `None` for the loopback port `parent` itself.
    pub(super) id: Option<String>,
    pub(super) end: End,
}

impl PortName {
    /// The port `spec` names: the pipe end of its `pipe`, `{` making a
    /// master end and `}` a slave end, of parent `ifname`; a name without
    /// a pipe names the parent itself, which this kernel offers as a
    /// loopback port. An empty parent or pipe id is `EINVAL`, as the
    /// kernel answers such a name.
    pub(super) fn of(spec: &PortSpec) -> io::Result<PortName> {
        if spec.ifname.is_empty() {
            return Err(errno(libc::EINVAL));
        }
        let (id, end) = match &spec.pipe {
            None => (None, End::Master),
            Some(p) if p.id.is_empty() => return Err(errno(libc::EINVAL)),
            Some(PipeSpec { role, id }) => (
                Some(id.clone()),
                match role {
                    PipeRole::Master => End::Master,
                    PipeRole::Slave => End::Slave,
                },
            ),
        };
        Ok(PortName {
            parent: spec.ifname.clone(),
            id,
            end,
        })
    }

    fn key(&self) -> PortKey {
        (self.parent.clone(), self.id.clone())
    }
}

/// A pipe's key: parent name and pipe id (`None` for a loopback port).
type PortKey = (String, Option<String>);

/// Live pipes and regions, by name. Entries are weak: a pipe lives while a
/// handle holds it, a region while a pipe or a mapping does; dead entries are
/// pruned when new ones are made.
pub(super) struct Registry {
    regions: HashMap<String, (u16, Weak<Region>)>,
    pipes: HashMap<PortKey, Weak<Pipe>>,
    next_mem_id: u16,
}

impl Registry {
    pub(super) fn new() -> Self {
        Registry {
            regions: HashMap::new(),
            pipes: HashMap::new(),
            next_mem_id: 1,
        }
    }

    /// How many regions and pipes are listed (dead entries included).
    pub(super) fn counts(&self) -> (usize, usize) {
        (self.regions.len(), self.pipes.len())
    }

    pub(super) fn find_pipe(&self, name: &PortName) -> Option<Arc<Pipe>> {
        self.pipes.get(&name.key()).and_then(Weak::upgrade)
    }

    /// The live pipe (or loopback port) `name` names; a master end or a
    /// loopback name creates it (shaped by `req`) if there is none, a slave
    /// end finds `ENOENT`.
    pub(super) fn pipe(&mut self, name: &PortName, req: &nmreq_register) -> io::Result<Arc<Pipe>> {
        if let Some(p) = self.find_pipe(name) {
            return Ok(p);
        }
        if name.end == End::Slave {
            return Err(errno(libc::ENOENT));
        }
        self.pipes.retain(|_, w| w.strong_count() > 0);
        let region = self.region(&name.parent)?;
        let (rings, slots) = pipe_shape(req);
        let pipe = Arc::new(Pipe::new(region, name, rings, slots)?);
        self.pipes.insert(name.key(), Arc::downgrade(&pipe));
        Ok(pipe)
    }

    /// The region of parent `parent`, made if there is none.
    fn region(&mut self, parent: &str) -> io::Result<Arc<Region>> {
        if let Some(r) = self.regions.get(parent).and_then(|(_, w)| w.upgrade()) {
            return Ok(r);
        }
        self.regions.retain(|_, (_, w)| w.strong_count() > 0);
        let mem_id = self.fresh_mem_id()?;
        let region = Arc::new(Region::new(mem_id)?);
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
fn pipe_shape(req: &nmreq_register) -> (u32, u32) {
    let rings = u32::from(req.nr_tx_rings.max(req.nr_rx_rings)).clamp(1, MAX_RINGS);
    let slots = match req.nr_tx_slots.max(req.nr_rx_slots) {
        0 => DEFAULT_SLOTS,
        n => n.clamp(MIN_SLOTS, MAX_SLOTS),
    };
    (rings, slots)
}
