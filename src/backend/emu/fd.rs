//! The handle: `open("/dev/netmap")` on the embedded kernel, its REGISTER,
//! PORT_INFO_GET and POOLS_INFO_GET requests (typed, as [`Control`] has them), and the
//! syncs and polls on its rings.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::notify;
use super::pipe::{self, Dir, Kind, Pipe, RING_UNIT};
use super::region::{h, Region, FREE, HELD, IF_UNIT, LIVE, MAX_HANDLES};
use super::registry::{pipe_shape, End, PortName, Registry};
use super::shm::Guard;
use super::MAX_RINGS;
use crate::backend::kregister::{self, Selection};
use crate::backend::sys::{cvt, Deadline};
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
    /// The descriptor of a handle not registered yet: an eventfd that never
    /// becomes ready.
    idle: OwnedFd,
    registry: Arc<Mutex<Registry>>,
}

impl fmt::Debug for EmuFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmuFd")
            .field("fd", &self.as_fd())
            .field("reg", &self.reg)
            .finish_non_exhaustive()
    }
}

/// What a successful REGISTER bound.
#[derive(Debug)]
struct Registration {
    pipe: Arc<Pipe>,
    /// The handle's record.
    slot: u32,
    end: End,
    tx: Range<u32>,
    rx: Range<u32>,
    /// Region offset of this handle's `netmap_if`.
    nifp_off: usize,
    /// txsync the bound TX rings on every poll (no `NR_NO_TX_POLL`).
    txpoll: bool,
    /// The handle's FIFO (see `notify`), read and written.
    fifo: OwnedFd,
}

impl Registration {
    fn tx_krings(&self) -> impl Iterator<Item = usize> + '_ {
        self.tx.clone().map(|i| self.pipe.kidx(self.end, Dir::Tx, i))
    }

    fn rx_krings(&self) -> impl Iterator<Item = usize> + '_ {
        self.rx.clone().map(|i| self.pipe.kidx(self.end, Dir::Rx, i))
    }

    fn region(&self) -> &Arc<Region> {
        &self.pipe.region
    }

    /// Whether a sync in `dir` would change nothing (see [`Pipe::idle`]),
    /// so that busy polling leaves the lock to the peers doing work. An
    /// idle rxsync still stamps its rings, as every rxsync does; one that
    /// would drain the FIFO is not idle.
    fn idle(&self, dir: SyncDir) -> bool {
        match dir {
            SyncDir::Tx => self.tx_krings().all(|k| self.pipe.idle(k)),
            SyncDir::Rx => {
                let idle = self.rx_krings().all(|k| self.pipe.idle(k))
                    && (self.region().handle(self.slot).get(h::ARMED) == 0
                        || self.rx_krings().any(|k| self.pipe.cur_short_of_tail(k)));
                if idle {
                    self.rx_krings().for_each(|k| self.pipe.ring(k).stamp());
                }
                idle
            }
        }
    }

    /// txsyncs every bound TX ring: `(room in some ring, all prologues ok)`.
    fn txsync_all(&self, g: &Guard<'_>) -> (bool, bool) {
        let (mut room, mut ok) = (false, true);
        for k in self.tx_krings() {
            ok &= self.pipe.txsync(g, k);
            room |= self.pipe.cur_short_of_tail(k);
        }
        (room, ok)
    }

    /// rxsyncs every bound RX ring: `(unseen packets, all prologues ok)`;
    /// drains the FIFO when nothing is left unseen.
    fn rxsync_all(&self, g: &Guard<'_>) -> (bool, bool) {
        let (mut unseen, mut ok) = (false, true);
        for k in self.rx_krings() {
            ok &= self.pipe.rxsync(g, k);
            unseen |= self.pipe.cur_short_of_tail(k);
        }
        if !unseen {
            notify::drain(self.region(), self.slot);
        }
        (unseen, ok)
    }
}

impl Drop for EmuFd {
    fn drop(&mut self) {
        if let Some(reg) = self.reg.take() {
            let region = reg.region();
            // Without the lock (a live holder stuck for seconds) the record
            // stays; it goes when this process has left, as a dead one's.
            if let Ok(g) = region.lock() {
                close_record(region, &g, reg.slot);
                pipe::free_if_unused(region, &g, reg.pipe.slot);
            }
        }
    }
}

/// Closes handle record `hs` (of this process, or of a dead one): it stops
/// binding its rings, its FIFO goes, and its extra buffers go back to the
/// pool if its `netmap_if`'s list still holds exactly them; else the record
/// stays, held, claiming them.
pub(super) fn close_record(region: &Region, _g: &Guard<'_>, hs: u32) {
    let r = region.handle(hs);
    if r.get(h::STATE) != LIVE {
        return;
    }
    let path = region.fifo_path(hs, r.get(h::GEN));
    // SAFETY: `path` is a C string; a FIFO already gone is fine.
    unsafe { libc::unlink(path.as_ptr()) };
    let (first, n) = (r.get(h::EXTRA_FIRST) as usize, r.get(h::EXTRA_N) as usize);
    let nifp = r.get(h::NIFP) as usize * IF_UNIT;
    let intact = n == 0
        || (region.in_buf_pool(first, n)
            && region.in_if_pool(nifp, size_of::<netmap_if>())
            && region.extra_intact(first, n, bufs_head(region, nifp).load(Ordering::Acquire)));
    if intact {
        if n > 0 {
            region.free_bufs(first, n);
        }
        r.set(h::STATE, FREE);
    } else {
        r.set(h::NIFP_UNITS, 0);
        r.set(h::STATE, HELD);
    }
}

/// `ni_bufs_head` of the `netmap_if` at region offset `nifp`.
fn bufs_head(region: &Region, nifp: usize) -> &AtomicU32 {
    let nif = region.at(nifp).cast::<netmap_if>();
    // SAFETY: the caller checked that a `netmap_if` at `nifp` lies in the
    // region's `netmap_if` pool, 64-aligned (`IF_UNIT` multiples); the
    // region stays mapped while it is borrowed; the field is a u32 at a
    // 4-aligned offset that any user may write, so it is accessed
    // atomically.
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

/// What a new handle record says, apart from its pipe.
struct Binding<'a> {
    end: End,
    tx: Range<u32>,
    rx: Range<u32>,
    flags: u32,
    /// A monitor's watched pipe and end.
    watch: (u32, u32),
    name: &'a str,
}

/// Makes the FIFO at `path`, for this user and the group `group` if the
/// region is shared with one, and opens it for reading and writing.
fn make_fifo(path: &CString, group: Option<libc::gid_t>) -> io::Result<OwnedFd> {
    let mode = if group.is_some() { 0o660 } else { 0o600 };
    // SAFETY: `path` is a C string. A FIFO left at this path by a crashed
    // process of the same generation is replaced.
    unsafe { libc::unlink(path.as_ptr()) };
    // SAFETY: as above.
    cvt(unsafe { libc::mkfifo(path.as_ptr(), mode) })?;
    // SAFETY: as above; O_NONBLOCK keeps the open from waiting for a writer.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
    // SAFETY: `fd` was just opened and is owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if let Some(g) = group {
        // SAFETY: fchown and fchmod on an fd we own (-1: the owner stays);
        // mkfifo's mode was cut by the umask.
        unsafe {
            libc::fchown(fd.as_raw_fd(), u32::MAX, g);
            libc::fchmod(fd.as_raw_fd(), 0o660);
        }
    }
    notify::size_fifo(&fd);
    Ok(fd)
}

impl EmuFd {
    /// A fresh, unregistered handle.
    pub(super) fn new(registry: Arc<Mutex<Registry>>) -> io::Result<EmuFd> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new
        // file descriptor that nothing else owns.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        Ok(EmuFd {
            reg: None,
            // SAFETY: `fd` was just opened and is owned by no one else.
            idle: unsafe { OwnedFd::from_raw_fd(fd) },
            registry,
        })
    }

    fn region(&self, parent: &str) -> io::Result<Arc<Region>> {
        lock(&self.registry).region(parent)
    }

    /// Binds `pipe`'s rings of `b` for this handle, under `g`: a record, a
    /// `netmap_if`, a FIFO, then extra buffers; `EBUSY` if a ring is not
    /// free for this binder. On failure nothing stays behind but `pipe`.
    fn bind(
        &mut self,
        g: &Guard<'_>,
        pipe: Arc<Pipe>,
        b: Binding<'_>,
        extra: u32,
    ) -> io::Result<Registration> {
        let region = Arc::clone(&pipe.region);
        let slot = (0..MAX_HANDLES)
            .find(|&i| region.handle(i).get(h::STATE) == FREE)
            .ok_or_else(|| errno(libc::ENOMEM))?;
        let nifp_len = kregister::if_len(pipe.nrings);
        let nifp_off = region.alloc_if(g, nifp_len)?;
        region.note_handle(slot);
        let r = region.handle(slot);
        let gen = r.get(h::GEN).wrapping_add(1);
        for (f, v) in [
            (h::GEN, gen),
            (h::PROC, region.me()),
            (h::PIPE, pipe.slot),
            (h::END, b.end as u32),
            (h::TX_LO, b.tx.start),
            (h::TX_HI, b.tx.end),
            (h::RX_LO, b.rx.start),
            (h::RX_HI, b.rx.end),
            (h::FLAGS, b.flags),
            (h::WATCH, b.watch.0),
            (h::WATCH_END, b.watch.1),
            (h::NIFP, (nifp_off / IF_UNIT) as u32),
            (h::NIFP_UNITS, nifp_len.div_ceil(IF_UNIT) as u32),
            (h::EXTRA_FIRST, 0),
            (h::EXTRA_N, 0),
            (h::ARMED, 0),
        ] {
            r.set(f, v);
        }
        let fifo = make_fifo(&region.fifo_path(slot, gen), region.group())?;
        let mut reg = Registration {
            pipe,
            slot,
            end: b.end,
            tx: b.tx,
            rx: b.rx,
            nifp_off,
            txpoll: b.flags & h::TXPOLL != 0,
            fifo,
        };
        let krings: Vec<usize> = reg.tx_krings().chain(reg.rx_krings()).collect();
        if !reg.pipe.bind(g, &krings, slot, b.flags & h::EXCLUSIVE != 0) {
            // SAFETY: the path is a C string.
            unsafe { libc::unlink(region.fifo_path(slot, gen).as_ptr()) };
            return Err(errno(libc::EBUSY));
        }
        write_if(&reg, b.name);
        if extra > 0 {
            let (first, n) = region.alloc_extra(g, extra as usize);
            r.set(h::EXTRA_FIRST, first as u32);
            r.set(h::EXTRA_N, n as u32);
            if n > 0 {
                bufs_head(&region, nifp_off).store(first as u32, Ordering::Release);
            }
        }
        reg.txpoll = b.flags & h::TXPOLL != 0;
        Ok(reg)
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
        let region = self.region(&name.parent)?;
        let g = region.lock()?;
        let watched = name
            .find(&region, &g)
            .filter(|&s| region.live_handles().any(|i| region.handle(i).get(h::PIPE) == s))
            .and_then(|s| Pipe::view(&region, &g, s))
            .ok_or_else(|| errno(libc::EINVAL))?;
        let rings = sel.rings(watched.nrings, libc::EINVAL)?;
        let pipe = Arc::new(Pipe::create(
            &region,
            &g,
            "",
            Kind::Monitor,
            watched.nrings,
            watched.nslots,
        )?);
        let mut flags = 0;
        if monitor & NR_ZCOPY_MON != 0 {
            // A zero-copy monitor watches both directions, as in the module.
            flags |= h::MON_ZERO;
        }
        if monitor & NR_MONITOR_TX != 0 {
            flags |= h::MON_TX;
        }
        if monitor & NR_MONITOR_RX != 0 {
            flags |= h::MON_RX;
        }
        let b = Binding {
            end: End::Master,
            tx: 0..0,
            rx: rings,
            flags,
            watch: (watched.slot, name.end as u32),
            name: &spec.nr_name,
        };
        let reg = self.bind(&g, Arc::clone(&pipe), b, 0);
        let reg = reg.inspect_err(|_| pipe::free_if_unused(&region, &g, pipe.slot))?;
        describe!(req, &reg.pipe);
        req.nr_offset = reg.nifp_off as u64;
        req.nr_extra_bufs = 0;
        drop(g);
        self.reg = Some(reg);
        Ok(())
    }

    fn registered(&self) -> io::Result<&Registration> {
        self.reg.as_ref().ok_or_else(|| errno(libc::ENXIO))
    }

    /// The live pipe `spec` names, for the info requests.
    fn named_pipe<T>(&self, spec: &PortSpec, f: impl FnOnce(&Pipe) -> io::Result<T>) -> io::Result<T> {
        let name = PortName::of(spec)?;
        let region = self.region(&name.parent)?;
        let g = region.lock()?;
        let pipe = name
            .find(&region, &g)
            .and_then(|s| Pipe::view(&region, &g, s))
            .ok_or_else(|| errno(libc::ENOENT))?;
        f(&pipe)
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
        let region = self.region(&name.parent)?;
        let g = region.lock()?;
        // A ring that a dead process bound is free again.
        region.reclaim(&g);
        let pipe = match name.find(&region, &g) {
            Some(s) => Pipe::view(&region, &g, s).ok_or_else(|| errno(libc::EIO))?,
            // Either end makes the pair, as in the module.
            None => {
                let (rings, slots) = pipe_shape(req);
                Pipe::create(&region, &g, name.record(), name.kind(), rings, slots)?
            }
        };
        let pipe = Arc::new(pipe);
        let rings = sel.rings(pipe.nrings, libc::EINVAL);
        let rings = rings.inspect_err(|_| pipe::free_if_unused(&region, &g, pipe.slot))?;
        let (tx, rx) = sel.per_dir(rings);
        let mut flags = 0;
        if req.nr_flags & NR_NO_TX_POLL == 0 {
            flags |= h::TXPOLL;
        }
        if req.nr_flags & NR_EXCLUSIVE != 0 {
            flags |= h::EXCLUSIVE;
        }
        let b = Binding {
            end: name.end,
            tx,
            rx,
            flags,
            watch: (u32::MAX, 0),
            name: &spec.nr_name,
        };
        let reg = self.bind(&g, Arc::clone(&pipe), b, req.nr_extra_bufs);
        let reg = reg.inspect_err(|_| pipe::free_if_unused(&region, &g, pipe.slot))?;
        describe!(req, &reg.pipe);
        req.nr_offset = reg.nifp_off as u64;
        req.nr_extra_bufs = region.handle(reg.slot).get(h::EXTRA_N);
        drop(g);
        self.reg = Some(reg);
        Ok(())
    }

    fn port_info(&mut self, spec: &PortSpec, version: u16, info: &mut nmreq_port_info_get) -> io::Result<()> {
        kregister::check_version(version)?;
        self.named_pipe(spec, |pipe| {
            describe!(info, pipe);
            Ok(())
        })
    }

    /// The region of the open pipe (or loopback port) `spec` names; an
    /// `nr_mem_id` other than 0 or the region's is `EINVAL`, as a pipe's
    /// memory is its parent's and cannot be moved.
    fn pools_info(&mut self, spec: &PortSpec, info: &mut nmreq_pools_info) -> io::Result<()> {
        self.named_pipe(spec, |pipe| {
            if info.nr_mem_id != 0 && info.nr_mem_id != pipe.region.mem_id {
                return Err(errno(libc::EINVAL));
            }
            *info = pipe.region.pools(RING_UNIT);
            Ok(())
        })
    }

    fn mmap(&mut self, len: usize) -> io::Result<Mapping> {
        let reg = self.reg.as_ref().ok_or_else(|| errno(libc::EINVAL))?;
        let region = reg.region();
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
        if reg.idle(dir) {
            return Ok(());
        }
        let g = reg.region().lock()?;
        let ok = match dir {
            SyncDir::Tx => reg.txsync_all(&g).1,
            SyncDir::Rx => reg.rxsync_all(&g).1,
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
        let region = reg.region();
        let mut g = region.lock()?;
        loop {
            let mut revents = 0;
            if reg.txpoll || want_tx != 0 {
                let (room, ok) = reg.txsync_all(&g);
                if room {
                    revents |= want_tx;
                }
                if !ok {
                    revents |= libc::POLLERR;
                }
            }
            if want_rx != 0 {
                let (unseen, ok) = reg.rxsync_all(&g);
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
            // Sleep until a peer changes something, then check again.
            match pipe::wait(region, g, deadline)? {
                Some(guard) => g = guard,
                None => return Ok(0),
            }
        }
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.reg {
            Some(reg) => reg.fifo.as_fd(),
            None => self.idle.as_fd(),
        }
    }
}
