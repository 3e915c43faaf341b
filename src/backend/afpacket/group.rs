//! The process-wide registry: memory ids, bound rings and fanout groups.

use std::collections::{HashMap, HashSet};
use std::ffi::c_int;
use std::io;
use std::ops::Range;
use std::os::fd::AsFd;
use std::sync::{LazyLock, Mutex};

use super::rings::Sock;
use super::sys::{
    getsockopt_int, setsockopt, PACKET_FANOUT, PACKET_FANOUT_FLAG_UNIQUEID, PACKET_FANOUT_HASH, SOL_PACKET,
};
use crate::backend::{errno, lock};

/// Identifies an interface: the network namespace (device and inode of its
/// nsfs file) and the interface index in it.
type IfKey = (u64, u64, c_int);

#[derive(Debug)]
struct Group {
    /// The kernel's fanout group id.
    id: u16,
    /// Ring pairs of every port on this interface (all must agree).
    pairs: u32,
    /// How many live ports bind each ring pair (more than one only for
    /// ports that share their rings).
    bound: Vec<u32>,
}

#[derive(Debug, Default)]
struct Registry {
    mem_ids: HashSet<u16>,
    next_mem: u16,
    rings: HashMap<RingKey, RingUse>,
    groups: HashMap<IfKey, Group>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

/// A memory id no live AF_PACKET or AF_XDP port has; released on drop.
#[derive(Debug)]
pub(crate) struct MemId(pub(crate) u16);

impl MemId {
    pub(crate) fn new() -> io::Result<MemId> {
        let mut reg = lock(&REGISTRY);
        for _ in 0..=u16::MAX as u32 {
            reg.next_mem = reg.next_mem.wrapping_add(1).max(1);
            let id = reg.next_mem;
            if reg.mem_ids.insert(id) {
                return Ok(MemId(id));
            }
        }
        Err(errno(libc::ENOMEM))
    }

    /// The memory id `id`, asked for by name (`afxdp:eth0@3`): `EBUSY` if
    /// a live port has it already.
    pub(crate) fn claim(id: u16) -> io::Result<MemId> {
        if id != 0 && lock(&REGISTRY).mem_ids.insert(id) {
            Ok(MemId(id))
        } else {
            Err(errno(libc::EBUSY))
        }
    }
}

impl Drop for MemId {
    fn drop(&mut self) {
        lock(&REGISTRY).mem_ids.remove(&self.0);
    }
}

/// One ring of an interface: its direction (`true` for TX) and ring id.
type RingKey = (IfKey, bool, u32);

/// Who binds one ring of an interface, counted as netmap counts a kring's
/// users.
#[derive(Debug, Default)]
struct RingUse {
    /// Live ports of this process that bind the ring.
    users: u32,
    /// One of them asked for `NR_EXCLUSIVE` (netmap's `NKR_EXCLUSIVE`).
    exclusive: bool,
}

/// Rings of an interface bound by one port; released on drop.
///
/// Each port has sockets and rings of its own, so two ports never alias
/// memory; the count only makes a port answer as netmap's module does
/// (`netmap_krings_get`): `EBUSY` when a ring it selects is bound
/// exclusively, or bound at all and this port asks for it exclusively.
#[derive(Debug)]
pub(super) struct RingClaim {
    rings: Vec<RingKey>,
    exclusive: bool,
}

impl RingClaim {
    /// Binds the `tx` and `rx` rings of `ifindex`, or none of them.
    pub(super) fn take(
        ifindex: c_int,
        tx: Range<u32>,
        rx: Range<u32>,
        exclusive: bool,
    ) -> io::Result<RingClaim> {
        let key = if_key(ifindex)?;
        let rings: Vec<RingKey> = tx
            .map(|i| (key, true, i))
            .chain(rx.map(|i| (key, false, i)))
            .collect();
        let mut reg = lock(&REGISTRY);
        let taken = |r: &RingKey| {
            reg.rings
                .get(r)
                .is_some_and(|u| u.exclusive || (exclusive && u.users > 0))
        };
        if rings.iter().any(taken) {
            return Err(errno(libc::EBUSY));
        }
        for r in &rings {
            let u = reg.rings.entry(*r).or_default();
            u.users += 1;
            u.exclusive |= exclusive;
        }
        Ok(RingClaim { rings, exclusive })
    }
}

impl Drop for RingClaim {
    fn drop(&mut self) {
        let mut reg = lock(&REGISTRY);
        for r in &self.rings {
            if let Some(u) = reg.rings.get_mut(r) {
                if self.exclusive {
                    u.exclusive = false;
                }
                u.users = u.users.saturating_sub(1);
                if u.users == 0 {
                    reg.rings.remove(r);
                }
            }
        }
    }
}

/// Ring pairs of a fanout group bound by one port; released on drop.
#[derive(Debug)]
pub(super) struct Membership {
    key: IfKey,
    pairs: Range<u32>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut reg = lock(&REGISTRY);
        if let Some(g) = reg.groups.get_mut(&self.key) {
            for p in self.pairs.clone() {
                if let Some(b) = g.bound.get_mut(p as usize) {
                    *b = b.saturating_sub(1);
                }
            }
            if g.bound.iter().all(|&b| b == 0) {
                reg.groups.remove(&self.key);
            }
        }
    }
}

/// Interface `ifindex` of the calling thread's network namespace.
fn if_key(ifindex: c_int) -> io::Result<IfKey> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata("/proc/thread-self/ns/net")?;
    Ok((m.dev(), m.ino(), ifindex))
}

/// The value of `PACKET_FANOUT` for `id` in hash mode.
fn fanout_arg(id: u16, flags: u32) -> c_int {
    (u32::from(id) | ((PACKET_FANOUT_HASH | flags) << 16)) as c_int
}

/// Joins `socks` (bound, RX-capable) to this process's fanout group of the
/// interface, creating it with a kernel-allocated id if there is none.
pub(super) fn join_fanout(
    socks: &[Sock],
    ifindex: c_int,
    pairs: u32,
    bound: Range<u32>,
) -> io::Result<Membership> {
    let key = if_key(ifindex)?;
    let mut reg = lock(&REGISTRY);
    let mut id = match reg.groups.get(&key) {
        Some(g) if g.pairs != pairs => return Err(errno(libc::EBUSY)),
        Some(g) => Some(g.id),
        None => None,
    };
    for s in socks {
        let fd = s.fd.as_fd();
        match id {
            Some(id) => setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &fanout_arg(id, 0))?,
            None => {
                setsockopt(
                    fd,
                    SOL_PACKET,
                    PACKET_FANOUT,
                    &fanout_arg(0, PACKET_FANOUT_FLAG_UNIQUEID),
                )?;
                let v = getsockopt_int(fd, SOL_PACKET, PACKET_FANOUT)?;
                id = Some((v as u32 & 0xffff) as u16);
            }
        }
    }
    let id = id.ok_or_else(|| errno(libc::EINVAL))?;
    let g = reg.groups.entry(key).or_insert_with(|| Group {
        id,
        pairs,
        bound: vec![0; pairs as usize],
    });
    for p in bound.clone() {
        g.bound[p as usize] += 1;
    }
    Ok(Membership { key, pairs: bound })
}
