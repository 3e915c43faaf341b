//! The handle: `open("/dev/netmap")` on the embedded kernel, its REGISTER,
//! PORT_INFO_GET and POOLS_INFO_GET requests (typed, as [`Control`] has them), and the
//! syncs and polls on its rings.

use std::fmt;
use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::notify::Notifier;
use super::pipe::{Dir, Pipe, PipeState, RING_UNIT};
use super::registry::{End, PortName, Registry};
use super::MAX_RINGS;
use crate::backend::kregister::{self, Selection};
use crate::backend::sys::Deadline;
use crate::backend::{errno, lock, Control, Mapping, PortFd, SyncDir};
use crate::ffi::{
    netmap_if, nmreq_pools_info, nmreq_port_info_get, nmreq_register, NR_EXCLUSIVE, NR_MONITOR_RX,
    NR_MONITOR_TX, NR_NO_TX_POLL, NR_ZCOPY_MON,
};
use crate::spec::PortSpec;

/// One open handle of the embedded kernel: `open("/dev/netmap")`.
pub(super) struct EmuFd {
    /// The registered end, once REGISTER succeeded.
    reg: Option<Registration>,
    notifier: Arc<Notifier>,
    registry: Arc<Mutex<Registry>>,
}

impl fmt::Debug for EmuFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmuFd")
            .field("fd", &self.notifier.efd)
            .field("reg", &self.reg)
            .finish_non_exhaustive()
    }
}

/// What a successful REGISTER bound.
#[derive(Debug)]
struct Registration {
    pipe: Arc<Pipe>,
    end: End,
    tx: Range<u32>,
    rx: Range<u32>,
    /// Region offset and size of this handle's `netmap_if`.
    nifp_off: usize,
    nifp_len: usize,
    /// txsync the bound TX rings on every poll (no `NR_NO_TX_POLL`).
    txpoll: bool,
    /// Bound with `NR_EXCLUSIVE`: this handle flagged its rings exclusive.
    exclusive: bool,
    /// Its extra buffers: the first and how many.
    extra: (usize, usize),
}

impl Registration {
    fn tx_krings(&self) -> impl Iterator<Item = usize> + '_ {
        self.tx.clone().map(|i| self.pipe.kidx(self.end, Dir::Tx, i))
    }

    fn rx_krings(&self) -> impl Iterator<Item = usize> + '_ {
        self.rx.clone().map(|i| self.pipe.kidx(self.end, Dir::Rx, i))
    }

    /// txsyncs every bound TX ring: `(room in some ring, all prologues ok)`.
    fn txsync_all(&self, st: &mut PipeState) -> (bool, bool) {
        let (mut room, mut ok) = (false, true);
        for k in self.tx_krings() {
            ok &= self.pipe.txsync(st, k);
            room |= Pipe::cur_short_of_tail(st, k);
        }
        (room, ok)
    }

    /// rxsyncs every bound RX ring: `(unseen packets, all prologues ok)`;
    /// drains the eventfd when nothing is left unseen.
    fn rxsync_all(&self, st: &mut PipeState, notifier: &Notifier) -> (bool, bool) {
        let (mut unseen, mut ok) = (false, true);
        for k in self.rx_krings() {
            ok &= self.pipe.rxsync(st, k);
            unseen |= Pipe::cur_short_of_tail(st, k);
        }
        if !unseen {
            notifier.drain();
        }
        (unseen, ok)
    }
}

impl Drop for EmuFd {
    fn drop(&mut self) {
        if let Some(reg) = self.reg.take() {
            let krings = reg.tx_krings().chain(reg.rx_krings());
            reg.pipe.unbind(krings, &self.notifier, reg.exclusive);
            let (first, n) = reg.extra;
            if n > 0 {
                let head = bufs_head(&reg).load(Ordering::Acquire);
                reg.pipe.region.free_extra(first, n, head);
            }
            reg.pipe.region.free_if(reg.nifp_off, reg.nifp_len);
        }
    }
}

/// `ni_bufs_head` of this handle's `netmap_if`.
fn bufs_head(reg: &Registration) -> &AtomicU32 {
    let nif = reg.pipe.region.at(reg.nifp_off).cast::<netmap_if>();
    // SAFETY: the handle's `netmap_if` lies in the region (allocated to it
    // at REGISTER, 64-aligned), which `reg.pipe` keeps mapped; the field is
    // a u32 at a 4-aligned offset that the user may write, so it is
    // accessed atomically.
    unsafe { AtomicU32::from_ptr(std::ptr::addr_of_mut!((*nif).ni_bufs_head)) }
}

/// Fills this handle's `netmap_if`.
fn write_if(reg: &Registration, name: &str) {
    let pipe = &reg.pipe;
    let nifp = reg.nifp_off as isize;
    let ofs = |dir, i| (i, pipe.ring_off(pipe.kidx(reg.end, dir, i)) as isize - nifp);
    let nif = NonNull::new(pipe.region.at(reg.nifp_off)).expect("netmap_if in region");
    // SAFETY: `[nifp_off, nifp_off + nifp_len)`, `nifp_len` being
    // `if_len(nrings)`, was just allocated to this handle from the netmap_if
    // pool, inside the mapped region and 64-aligned; the user learns its
    // offset only when REGISTER returns. The ring ids are below `nrings`.
    unsafe {
        kregister::write_if(
            nif.cast(),
            name,
            pipe.nrings,
            reg.tx.clone().map(|i| ofs(Dir::Tx, i)),
            reg.rx.clone().map(|i| ofs(Dir::Rx, i)),
        )
    }
}

/// Writes `pipe`'s shape and memory into the fields that a REGISTER reply
/// (`nmreq_register`) and a PORT_INFO_GET reply (`nmreq_port_info_get`)
/// share: two structs with the same field names.
macro_rules! describe {
    ($reply:expr, $pipe:expr) => {{
        let (reply, pipe) = (&mut *$reply, &*$pipe);
        reply.nr_memsize = pipe.region.len as u64;
        reply.nr_tx_slots = pipe.nslots;
        reply.nr_rx_slots = pipe.nslots;
        reply.nr_tx_rings = pipe.nrings as u16;
        reply.nr_rx_rings = pipe.nrings as u16;
        reply.nr_host_tx_rings = 0;
        reply.nr_host_rx_rings = 0;
        reply.nr_mem_id = pipe.region.mem_id;
    }};
}

impl EmuFd {
    /// A fresh, unregistered handle whose fd is `notifier`'s eventfd.
    pub(super) fn new(notifier: Arc<Notifier>, registry: Arc<Mutex<Registry>>) -> EmuFd {
        EmuFd {
            reg: None,
            notifier,
            registry,
        }
    }

    /// REGISTER of a monitor of pipe end (or loopback port) `name`: a
    /// port of its own, in the monitored port's region and shape. A copy
    /// monitor (`/t`, `/r`, both with `/rt`) gets in its RX ring `i` a copy
    /// of every packet that passes the monitored end's TX ring `i`
    /// (flagged `NS_TXMON`) or RX ring `i`; a zero-copy monitor (`/z`, both
    /// directions) gets the buffers of the packets once the monitored end
    /// is done with them (its TX slots freed, its RX slots released),
    /// giving free buffers of its own in exchange, as the module's do. A
    /// port that no one has open is `EINVAL`, as the module answers for a
    /// port not in netmap mode.
    fn register_monitor(
        &mut self,
        spec: &PortSpec,
        req: &mut nmreq_register,
        name: &PortName,
        monitor: u64,
    ) -> io::Result<()> {
        let mut plain = *req;
        plain.nr_flags &= !monitor;
        let sel = Selection::check(&plain, self.reg.is_some())?;
        let watched = lock(&self.registry)
            .find_pipe(name)
            .ok_or_else(|| errno(libc::EINVAL))?;
        let rings = sel.rings(watched.nrings, libc::EINVAL)?;
        let own = PortName {
            parent: format!("{}/monitor", name.parent),
            id: None,
            end: End::Master,
        };
        let pipe = Arc::new(Pipe::new(
            Arc::clone(&watched.region),
            &own,
            watched.nrings,
            watched.nslots,
        )?);
        let nifp_len = kregister::if_len(pipe.nrings);
        let reg = Registration {
            end: End::Master,
            tx: 0..0,
            rx: rings.clone(),
            nifp_off: pipe.region.alloc_if(nifp_len)?,
            nifp_len,
            txpoll: false,
            exclusive: false,
            extra: (0, 0),
            pipe,
        };
        let krings: Vec<usize> = reg.rx_krings().collect();
        if !reg.pipe.bind(&krings, &self.notifier, false) {
            reg.pipe.region.free_if(reg.nifp_off, reg.nifp_len);
            return Err(errno(libc::EBUSY));
        }
        for i in rings {
            for (flag, dir) in [(NR_MONITOR_TX, Dir::Tx), (NR_MONITOR_RX, Dir::Rx)] {
                let k = watched.kidx(name.end, dir, i);
                // A zero-copy monitor watches both directions, as in the
                // module.
                let zero = monitor & NR_ZCOPY_MON != 0;
                if zero || monitor & flag != 0 {
                    watched.tap(k, &reg.pipe, zero);
                }
            }
        }
        write_if(&reg, &spec.nr_name);
        describe!(req, &reg.pipe);
        req.nr_offset = reg.nifp_off as u64;
        req.nr_extra_bufs = 0;
        self.reg = Some(reg);
        Ok(())
    }

    fn registered(&self) -> io::Result<&Registration> {
        self.reg.as_ref().ok_or_else(|| errno(libc::ENXIO))
    }
}

impl Control for EmuFd {
    fn register(&mut self, spec: &PortSpec, req: &mut nmreq_register) -> io::Result<()> {
        kregister::refuse_options(spec)?;
        let name = PortName::of(spec)?;
        let monitor = req.nr_flags & (NR_MONITOR_TX | NR_MONITOR_RX | NR_ZCOPY_MON);
        if monitor != 0 {
            return self.register_monitor(spec, req, &name, monitor);
        }
        let sel = Selection::check(req, self.reg.is_some())?;
        // Check the mode before making a pipe: ring ids are checked below.
        // A pipe has no host rings: other modes are EINVAL.
        sel.rings(MAX_RINGS, libc::EINVAL)?;
        let pipe = lock(&self.registry).pipe(&name, req)?;
        let (tx, rx) = sel.per_dir(sel.rings(pipe.nrings, libc::EINVAL)?);
        let nifp_len = kregister::if_len(pipe.nrings);
        let mut reg = Registration {
            end: name.end,
            tx,
            rx,
            nifp_off: pipe.region.alloc_if(nifp_len)?,
            nifp_len,
            txpoll: req.nr_flags & NR_NO_TX_POLL == 0,
            exclusive: req.nr_flags & NR_EXCLUSIVE != 0,
            extra: (0, 0),
            pipe,
        };
        let pipe = &reg.pipe;
        let krings: Vec<usize> = reg.tx_krings().chain(reg.rx_krings()).collect();
        if !pipe.bind(&krings, &self.notifier, reg.exclusive) {
            pipe.region.free_if(reg.nifp_off, reg.nifp_len);
            return Err(errno(libc::EBUSY));
        }
        write_if(&reg, &spec.nr_name);
        reg.extra = reg.pipe.region.alloc_extra(req.nr_extra_bufs as usize);
        if reg.extra.1 > 0 {
            bufs_head(&reg).store(reg.extra.0 as u32, Ordering::Release);
        }

        describe!(req, pipe);
        req.nr_offset = reg.nifp_off as u64;
        req.nr_extra_bufs = reg.extra.1 as u32;
        self.reg = Some(reg);
        Ok(())
    }

    fn port_info(&mut self, spec: &PortSpec, version: u16, info: &mut nmreq_port_info_get) -> io::Result<()> {
        kregister::check_version(version)?;
        let name = PortName::of(spec)?;
        let pipe = lock(&self.registry)
            .find_pipe(&name)
            .ok_or_else(|| errno(libc::ENOENT))?;
        describe!(info, pipe);
        Ok(())
    }

    /// The region of the open pipe (or loopback port) `spec` names; an
    /// `nr_mem_id` other than 0 or the region's is `EINVAL`, as a pipe's
    /// memory is its parent's and cannot be moved.
    fn pools_info(&mut self, spec: &PortSpec, info: &mut nmreq_pools_info) -> io::Result<()> {
        let name = PortName::of(spec)?;
        let pipe = lock(&self.registry)
            .find_pipe(&name)
            .ok_or_else(|| errno(libc::ENOENT))?;
        if info.nr_mem_id != 0 && info.nr_mem_id != pipe.region.mem_id {
            return Err(errno(libc::EINVAL));
        }
        *info = pipe.region.pools(RING_UNIT);
        Ok(())
    }

    fn mmap(&mut self, len: usize) -> io::Result<Mapping> {
        let reg = self.reg.as_ref().ok_or_else(|| errno(libc::EINVAL))?;
        let region = &reg.pipe.region;
        let owner: Arc<dyn Send + Sync> = Arc::clone(region) as _;
        // SAFETY: the region's mapping stays mapped and writable while
        // `owner`, an `Arc` of the region, lives.
        unsafe { Mapping::prefix(region.base, region.len, len, owner) }
    }

    fn into_port(self: Box<Self>) -> Box<dyn PortFd> {
        self
    }
}

impl PortFd for EmuFd {
    fn sync(&self, dir: SyncDir) -> io::Result<()> {
        let reg = self.registered()?;
        let mut st = reg.pipe.lock();
        let ok = match dir {
            SyncDir::Tx => reg.txsync_all(&mut st).1,
            SyncDir::Rx => reg.rxsync_all(&mut st, &self.notifier).1,
        };
        if ok {
            Ok(())
        } else {
            Err(errno(libc::EINVAL))
        }
    }

    fn poll(&self, events: i16, deadline: Deadline) -> io::Result<i16> {
        let Some(reg) = self.reg.as_ref() else {
            return Ok(libc::POLLERR);
        };
        let want_tx = events & (libc::POLLOUT | libc::POLLWRNORM);
        let want_rx = events & (libc::POLLIN | libc::POLLRDNORM);
        let deadline = deadline.instant();
        let pipe = &reg.pipe;
        let mut st = pipe.lock();
        loop {
            let mut revents = 0;
            if reg.txpoll || want_tx != 0 {
                let (room, ok) = reg.txsync_all(&mut st);
                if room {
                    revents |= want_tx;
                }
                if !ok {
                    revents |= libc::POLLERR;
                }
            }
            if want_rx != 0 {
                let (unseen, ok) = reg.rxsync_all(&mut st, &self.notifier);
                if unseen {
                    revents |= want_rx;
                }
                if !ok {
                    revents |= libc::POLLERR;
                }
            }
            if revents != 0 {
                return Ok(revents);
            }
            // Sleep until the peer changes something, then check again.
            match pipe.wait(st, deadline) {
                Some(guard) => st = guard,
                None => return Ok(0),
            }
        }
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        self.notifier.efd.as_fd()
    }
}
