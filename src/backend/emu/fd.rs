//! The handle: `open("/dev/netmap")` on the embedded kernel, its REGISTER
//! and PORT_INFO_GET requests, and the syncs and polls on its rings.

use std::fmt;
use std::io;
use std::mem::{offset_of, size_of};
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd};
use std::ptr;
use std::sync::{Arc, Mutex};

use super::notify::Notifier;
use super::pipe::{Dir, Pipe, PipeState};
use super::registry::{End, PortName, Registry};
use super::{IF_HDR, MAX_RINGS};
use crate::backend::sys::Deadline;
use crate::backend::{errno, lock, update_body, KernelFd, Mapping, SyncDir};
use crate::ffi::{
    netmap_if, nmreq_header, nmreq_option, nmreq_port_info_get, nmreq_register, NETMAP_API,
    NETMAP_REQ_PORT_INFO_GET, NETMAP_REQ_REGISTER, NR_EXCLUSIVE, NR_MONITOR_RX, NR_MONITOR_TX, NR_NO_TX_POLL,
    NR_REG_ALL_NIC, NR_REG_DEFAULT, NR_REG_ONE_NIC, NR_RX_RINGS_ONLY, NR_TX_RINGS_ONLY, NR_ZCOPY_MON,
};

/// Bytes of `netmap_if.ni_name` (`IFNAMSIZ`).
const IF_NAME_LEN: usize = offset_of!(netmap_if, ni_version) - offset_of!(netmap_if, ni_name);
/// Longest `nmreq_option` chain walked before the request is refused.
const MAX_OPTIONS: usize = 64;

/// One open handle of the embedded kernel: `open("/dev/netmap")`.
pub(super) struct EmuFd {
    /// The registered end, once `NIOCCTRL(REGISTER)` succeeded.
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
            reg.pipe.region.free_if(reg.nifp_off, reg.nifp_len);
        }
    }
}

/// The rings a register request selects, per direction.
fn ring_ranges(req: &nmreq_register, nrings: u32) -> io::Result<(Range<u32>, Range<u32>)> {
    let all = match req.nr_mode {
        NR_REG_DEFAULT | NR_REG_ALL_NIC => 0..nrings,
        NR_REG_ONE_NIC => {
            let id = u32::from(req.nr_ringid);
            if id >= nrings {
                return Err(errno(libc::EINVAL));
            }
            id..id + 1
        }
        // Host rings (SW, NIC_SW, ONE_SW), the deprecated pipe modes and
        // NULL: a pipe has none of these.
        _ => return Err(errno(libc::EINVAL)),
    };
    let tx_only = req.nr_flags & NR_TX_RINGS_ONLY != 0;
    let rx_only = req.nr_flags & NR_RX_RINGS_ONLY != 0;
    match (tx_only, rx_only) {
        (true, true) => Err(errno(libc::EINVAL)),
        (true, false) => Ok((all, 0..0)),
        (false, true) => Ok((0..0, all)),
        (false, false) => Ok((all.clone(), all)),
    }
}

/// Marks every option of a request unsupported; the emu implements none.
///
/// # Safety
/// `head` is 0 or the address of a live, writable `nmreq_option` whose
/// `nro_next` chain obeys the same rule.
unsafe fn refuse_options(head: u64) -> io::Result<()> {
    if head == 0 {
        return Ok(());
    }
    let mut p = head;
    for _ in 0..MAX_OPTIONS {
        let opt = p as usize as *mut nmreq_option;
        // SAFETY: the caller's contract: `p` is a live, writable option.
        unsafe {
            ptr::addr_of_mut!((*opt).nro_status).write(libc::EOPNOTSUPP as u32);
            p = ptr::addr_of!((*opt).nro_next).read();
        }
        if p == 0 {
            return Err(errno(libc::EOPNOTSUPP));
        }
    }
    Err(errno(libc::EINVAL))
}

/// Fills this handle's `netmap_if`.
fn write_if(reg: &Registration, name: &[u8]) {
    let pipe = &reg.pipe;
    let nif = pipe.region.at(reg.nifp_off).cast::<netmap_if>();
    let n = pipe.nrings as usize;
    let ofs = |k: usize| pipe.ring_off(k) as isize - reg.nifp_off as isize;
    // SAFETY: `[nifp_off, nifp_off + nifp_len)` was just allocated to
    // this handle from the netmap_if pool, inside the mapped region and
    // 64-aligned; the user learns its offset only when REGISTER returns,
    // so plain writes do not race. `ring_ofs` has `2 * n` entries.
    unsafe {
        ptr::write_bytes(nif.cast::<u8>(), 0, reg.nifp_len);
        let nm = ptr::addr_of_mut!((*nif).ni_name).cast::<u8>();
        let len = name.len().min(IF_NAME_LEN - 1);
        ptr::copy_nonoverlapping(name.as_ptr(), nm, len);
        ptr::addr_of_mut!((*nif).ni_version).write(u32::from(NETMAP_API));
        ptr::addr_of_mut!((*nif).ni_tx_rings).write(n as u32);
        ptr::addr_of_mut!((*nif).ni_rx_rings).write(n as u32);
        let table = ptr::addr_of_mut!((*nif).ring_ofs).cast::<isize>();
        for i in reg.tx.clone() {
            table.add(i as usize).write(ofs(pipe.kidx(reg.end, Dir::Tx, i)));
        }
        for i in reg.rx.clone() {
            table
                .add(n + i as usize)
                .write(ofs(pipe.kidx(reg.end, Dir::Rx, i)));
        }
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

    fn register(&mut self, name: &PortName, req: &mut nmreq_register) -> io::Result<()> {
        if self.reg.is_some() {
            return Err(errno(libc::EBUSY));
        }
        if req.nr_flags & (NR_MONITOR_TX | NR_MONITOR_RX | NR_ZCOPY_MON) != 0 {
            return Err(errno(libc::EOPNOTSUPP));
        }
        // Check the mode before making a pipe: ring ids are checked below.
        ring_ranges(req, MAX_RINGS)?;
        let pipe = lock(&self.registry).pipe(name, req)?;
        let (tx, rx) = ring_ranges(req, pipe.nrings)?;
        let nifp_len = IF_HDR + 2 * pipe.nrings as usize * size_of::<isize>();
        let reg = Registration {
            end: name.end,
            tx,
            rx,
            nifp_off: pipe.region.alloc_if(nifp_len)?,
            nifp_len,
            txpoll: req.nr_flags & NR_NO_TX_POLL == 0,
            exclusive: req.nr_flags & NR_EXCLUSIVE != 0,
            pipe,
        };
        let pipe = &reg.pipe;
        let krings: Vec<usize> = reg.tx_krings().chain(reg.rx_krings()).collect();
        if !pipe.bind(&krings, &self.notifier, reg.exclusive) {
            pipe.region.free_if(reg.nifp_off, reg.nifp_len);
            return Err(errno(libc::EBUSY));
        }
        write_if(&reg, &name.full);

        describe!(req, pipe);
        req.nr_offset = reg.nifp_off as u64;
        req.nr_extra_bufs = 0;
        self.reg = Some(reg);
        Ok(())
    }

    fn port_info(&self, name: &PortName, info: &mut nmreq_port_info_get) -> io::Result<()> {
        let pipe = lock(&self.registry)
            .find_pipe(name)
            .ok_or_else(|| errno(libc::ENOENT))?;
        describe!(info, pipe);
        Ok(())
    }

    fn registered(&self) -> io::Result<&Registration> {
        self.reg.as_ref().ok_or_else(|| errno(libc::ENXIO))
    }
}

impl KernelFd for EmuFd {
    unsafe fn ctrl(&mut self, hdr: &mut nmreq_header) -> io::Result<()> {
        if hdr.nr_version != NETMAP_API || hdr.nr_reserved != 0 {
            return Err(errno(libc::EINVAL));
        }
        if hdr.nr_reqtype != NETMAP_REQ_REGISTER && hdr.nr_reqtype != NETMAP_REQ_PORT_INFO_GET {
            return Err(errno(libc::EOPNOTSUPP));
        }
        // SAFETY: `ctrl`'s contract: `nr_options` is 0 or a chain of live,
        // writable options.
        unsafe { refuse_options(hdr.nr_options) }?;
        if hdr.nr_body == 0 {
            return Err(errno(libc::EINVAL));
        }
        let name = PortName::parse(&hdr.nr_name)?;
        if hdr.nr_reqtype == NETMAP_REQ_REGISTER {
            // SAFETY: `ctrl`'s contract: `nr_body` points at a live,
            // writable `nmreq_register` for this request type.
            unsafe { update_body(hdr, |req: &mut nmreq_register| self.register(&name, req)) }
        } else {
            // SAFETY: `ctrl`'s contract: `nr_body` points at a live,
            // writable `nmreq_port_info_get` for this request type.
            unsafe { update_body(hdr, |info: &mut nmreq_port_info_get| self.port_info(&name, info)) }
        }
    }

    fn mmap(&mut self, len: usize) -> io::Result<Mapping> {
        let reg = self.reg.as_ref().ok_or_else(|| errno(libc::EINVAL))?;
        let region = &reg.pipe.region;
        if len == 0 || len > region.len {
            return Err(errno(libc::EINVAL));
        }
        let owner: Arc<dyn Send + Sync> = Arc::clone(region) as _;
        // SAFETY: `base..base+len` lies inside the region's mapping
        // (`len <= region.len`), which stays mapped and writable while
        // `owner`, an `Arc` of the region, lives.
        Ok(unsafe { Mapping::shared(region.base, len, owner) })
    }

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
