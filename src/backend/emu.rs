//! The embedded kernel: netmap pipes in user space, on the real shared-memory
//! layout.
//!
//! [`Emu`] answers the same `NIOCCTRL` requests as `/dev/netmap` would, for
//! pipes: `NAME{ID` is the master end of pipe `ID` of parent `NAME`, `NAME}ID`
//! its slave end. A bare `NAME` is a loopback port, whose TX ring `i` feeds its
//! own RX ring `i` (a stand-in for an interface looped back by cable; the
//! embedded kernel has no real interfaces). A handle ([`EmuFd`]) registers one
//! end (all of its rings, one ring, or one direction), and the user then
//! drives the rings in the returned region exactly as a C netmap program
//! would: move `head`/`cur`, sync, read `tail`.
//!
//! # Memory
//! Every parent `NAME` has one [`Region`], shared by all of its pipes (and its
//! loopback port), so a
//! buffer index means the same buffer in every port of one parent (buffers can
//! be swapped between them, as with the kernel, where pipes use their parent's
//! allocator). A region is one anonymous mapping, reserved generously and
//! populated lazily by the OS, laid out like the kernel's three pools:
//!
//! ```text
//! 0                   len/1024                    len/16                   len
//! | netmap_if pool    | ring pool                 | buffer pool              |
//! | one per handle    | 256-byte header + slots,  | 2048-byte buffers,       |
//! |                   | 4 rings per ring pair     | indices 0, 1 reserved    |
//! ```
//!
//! A ring's `buf_ofs` is the distance from the ring to buffer 0, so
//! `NETMAP_BUF(ring, idx)` works; a `netmap_if`'s `ring_ofs[i]` is the distance
//! from the `netmap_if` to ring `i`, or 0 for a ring the handle did not bind.
//! Space is handed out by first-fit free lists, so ports can be opened and
//! closed forever. The region is unmapped when its last pipe and its last
//! [`Mapping`] are gone.
//!
//! # Rings
//! Pipe rings come in pairs: master TX ring `i` feeds slave RX ring `i`, and
//! slave TX ring `i` feeds master RX ring `i` (a loopback port's TX ring `i`
//! feeds its RX ring `i`). The two rings of a pair hold the
//! same buffers at the same slot positions. A TX sync copies the slots the user
//! released (`[hwcur, head)`) into the peer ring at the same positions and
//! publishes them to the peer up to the end of the last complete packet (a
//! `NS_MOREFRAG` chain is published whole); an RX sync copies the slots the
//! user released back into the TX ring, which becomes free room for the sender
//! at its next sync. Before either, the kernel's prologue check runs: `head`
//! and `cur` must lie in `[hwcur, hwtail]` (wrapping at `num_slots`), else the
//! user's view is reset to the kernel's and the sync fails with `EINVAL`.
//! After either, `tail` is set to `hwtail`.
//!
//! The kernel-private state of each ring (`hwcur`, `hwtail`, `pipe_tail`, who
//! has bound it) lives in [`PipeState`], behind one mutex per pipe, and is
//! never read back from shared memory. The user-written `head` and `cur` are
//! loaded with `Acquire`, `tail` is stored with `Release`, and every other
//! access to the shared region goes through raw pointers and atomics, never a
//! Rust reference over a whole ring or slot.
//!
//! # Readiness
//! Each handle's fd is an eventfd, so event loops see real readiness. See
//! [`Notifier`] for how netmap's poll semantics map onto it.
//!
//! # Binding
//! REGISTER binds rings as the module's `netmap_krings_get` does: every ring
//! the request selects (with `NR_TX_RINGS_ONLY` or `NR_RX_RINGS_ONLY` the
//! other direction selects none) must be free of an exclusive binder, and,
//! for a request with `NR_EXCLUSIVE`, of any binder; else nothing is bound
//! and the answer is `EBUSY`. Otherwise each ring counts one more binder and,
//! for an exclusive request, is flagged exclusive until that handle closes.
//! A ring bound by several handles sends its readiness edges to each. A
//! handle registers once: a second REGISTER on it is `EBUSY`, as for the
//! module.
//!
//! # Unbinding
//! Closing a handle unbinds its rings but leaves the pipe's state as it is (as
//! the kernel does when one end of a pipe stays open). A later open that binds
//! those rings again resumes from the kernel's view: TX slots the old user
//! filled but never synced are dropped, RX slots it never released are
//! delivered again. When both ends are closed the pipe and its memory go.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::mem::{offset_of, size_of};
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use crate::backend::kring::{SharedRing, RING_HDR, SLOT_SIZE};
use crate::backend::sys::Deadline;
use crate::backend::{
    errno, lock, nm_prev as prev, update_body, within, Kernel, KernelFd, Mapping, MemDomain, SyncDir,
};
use crate::ffi::nm_next as next;
use crate::ffi::{
    netmap_if, netmap_ring, netmap_slot, nmreq_header, nmreq_option, nmreq_port_info_get, nmreq_register,
    NETMAP_API, NETMAP_REQ_PORT_INFO_GET, NETMAP_REQ_REGISTER, NR_EXCLUSIVE, NR_MONITOR_RX, NR_MONITOR_TX,
    NR_NO_TX_POLL, NR_REG_ALL_NIC, NR_REG_DEFAULT, NR_REG_ONE_NIC, NR_RX_RINGS_ONLY, NR_TX_RINGS_ONLY,
    NR_ZCOPY_MON, NS_BUF_CHANGED, NS_MOREFRAG,
};

/// Size of every buffer (`nr_buf_size`).
const BUF_SIZE: usize = 2048;
/// Buffers 0 and 1 are never handed out, as in netmap.
const RESERVED_BUFS: usize = 2;
/// Most ring pairs per direction a pipe may have.
const MAX_RINGS: u32 = 64;
/// Slots per ring when the request says 0.
const DEFAULT_SLOTS: u32 = 1024;
/// Fewest slots per ring: one slot always stays with the kernel.
const MIN_SLOTS: u32 = 2;
/// Most slots per ring.
const MAX_SLOTS: u32 = 16384;
/// Bytes of `netmap_if.ni_name` (`IFNAMSIZ`).
const IF_NAME_LEN: usize = offset_of!(netmap_if, ni_version) - offset_of!(netmap_if, ni_name);
/// The fixed part of a `netmap_if`, before `ring_ofs[]`.
const IF_HDR: usize = size_of::<netmap_if>();
/// Allocation granularity of the `netmap_if` pool.
const IF_UNIT: usize = 64;
/// Allocation granularity of the ring pool (a `netmap_ring` is 128-aligned).
const RING_UNIT: usize = 128;
/// Region sizes tried in turn: the address space is only reserved
/// (`MAP_NORESERVE`), pages are populated on first touch. 8 GiB holds about
/// 900 pipes of the default shape (one ring pair of 1024 slots each way), or
/// one of the largest shape (64 ring pairs of 16384 slots) beside many small
/// ones; when memory runs out, REGISTER fails with `ENOMEM`.
const REGION_SIZES: [u64; 4] = [8 << 30, 1 << 30, 256 << 20, 64 << 20];
/// Longest `nmreq_option` chain walked before the request is refused.
const MAX_OPTIONS: usize = 64;

const _: () = assert!(IF_HDR == 56);
const _: () = assert!(std::mem::align_of::<netmap_ring>() <= RING_UNIT);

// ---------------------------------------------------------------------------
// The process-global kernel.

/// The embedded kernel: a registry of pipes and of their parents' regions.
pub(crate) struct Emu {
    registry: Arc<Mutex<Registry>>,
}

impl fmt::Debug for Emu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reg = lock(&self.registry);
        f.debug_struct("Emu")
            .field("regions", &reg.regions.len())
            .field("pipes", &reg.pipes.len())
            .finish()
    }
}

/// The embedded kernel of this process.
pub(crate) fn emu() -> &'static Emu {
    static EMU: LazyLock<Emu> = LazyLock::new(|| Emu {
        registry: Arc::new(Mutex::new(Registry::new())),
    });
    &EMU
}

impl Kernel for Emu {
    fn open(&self) -> io::Result<Box<dyn KernelFd>> {
        Ok(Box::new(EmuFd {
            reg: None,
            notifier: Arc::new(Notifier::new()?),
            registry: Arc::clone(&self.registry),
        }))
    }

    fn domain(&self) -> MemDomain {
        MemDomain::Emulated
    }
}

/// Which end of a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// `NAME{ID`, or the only end of a loopback port `NAME`.
    Master = 0,
    /// `NAME}ID`.
    Slave = 1,
}

/// Ring direction, numbered as `netmap_ring.dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Tx = 0,
    Rx = 1,
}

/// A parsed port name.
#[derive(Debug)]
struct PortName {
    parent: Vec<u8>,
    /// The pipe id, or `None` for the loopback port `parent` itself.
    id: Option<Vec<u8>>,
    end: End,
    /// The whole name, for `ni_name`.
    full: Vec<u8>,
}

impl PortName {
    /// Parses `hdr.nr_name` as the kernel does: the last `{` makes a master
    /// end, else the last `}` a slave end. A name without either names the
    /// parent itself, which this kernel offers as a loopback port.
    fn parse(raw: &[std::ffi::c_char]) -> io::Result<PortName> {
        let bytes: Vec<u8> = raw.iter().map(|c| c.to_ne_bytes()[0]).collect();
        let len = bytes
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| errno(libc::EINVAL))?;
        let full = bytes[..len].to_vec();
        if full.is_empty() {
            return Err(errno(libc::EINVAL));
        }
        let (pos, end) = match full.iter().rposition(|&b| b == b'{') {
            Some(p) => (p, End::Master),
            None => match full.iter().rposition(|&b| b == b'}') {
                Some(p) => (p, End::Slave),
                None => {
                    return Ok(PortName {
                        parent: full.clone(),
                        id: None,
                        end: End::Master,
                        full,
                    })
                }
            },
        };
        if pos == 0 || pos + 1 == full.len() {
            return Err(errno(libc::EINVAL));
        }
        Ok(PortName {
            parent: full[..pos].to_vec(),
            id: Some(full[pos + 1..].to_vec()),
            end,
            full,
        })
    }

    fn key(&self) -> PortKey {
        (self.parent.clone(), self.id.clone())
    }
}

/// A pipe's key: parent name and pipe id (`None` for a loopback port).
type PortKey = (Vec<u8>, Option<Vec<u8>>);

/// Live pipes and regions, by name. Entries are weak: a pipe lives while a
/// handle holds it, a region while a pipe or a mapping does; dead entries are
/// pruned when new ones are made.
struct Registry {
    regions: HashMap<Vec<u8>, (u16, Weak<Region>)>,
    pipes: HashMap<PortKey, Weak<Pipe>>,
    next_mem_id: u16,
}

impl Registry {
    fn new() -> Self {
        Registry {
            regions: HashMap::new(),
            pipes: HashMap::new(),
            next_mem_id: 1,
        }
    }

    fn find_pipe(&self, name: &PortName) -> Option<Arc<Pipe>> {
        self.pipes.get(&name.key()).and_then(Weak::upgrade)
    }

    /// The live pipe (or loopback port) `name` names; a master end or a
    /// loopback name creates it (shaped by `req`) if there is none, a slave
    /// end finds `ENOENT`.
    fn pipe(&mut self, name: &PortName, req: &nmreq_register) -> io::Result<Arc<Pipe>> {
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
    fn region(&mut self, parent: &[u8]) -> io::Result<Arc<Region>> {
        if let Some(r) = self.regions.get(parent).and_then(|(_, w)| w.upgrade()) {
            return Ok(r);
        }
        self.regions.retain(|_, (_, w)| w.strong_count() > 0);
        let mem_id = self.fresh_mem_id()?;
        let region = Arc::new(Region::new(mem_id)?);
        self.regions
            .insert(parent.to_vec(), (mem_id, Arc::downgrade(&region)));
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

// ---------------------------------------------------------------------------
// Regions.

/// First-fit free list over `[start, start + len)` ranges of some unit.
#[derive(Debug)]
struct Extents {
    /// Free ranges as `(start, len)`, sorted, never adjacent.
    free: Vec<(usize, usize)>,
}

impl Extents {
    fn new(start: usize, len: usize) -> Self {
        Extents {
            free: if len > 0 { vec![(start, len)] } else { Vec::new() },
        }
    }

    fn alloc(&mut self, len: usize) -> Option<usize> {
        let i = self.free.iter().position(|&(_, l)| l >= len)?;
        let (start, l) = self.free[i];
        if l == len {
            self.free.remove(i);
        } else {
            self.free[i] = (start + len, l - len);
        }
        Some(start)
    }

    fn release(&mut self, start: usize, len: usize) {
        let i = self.free.partition_point(|&(s, _)| s < start);
        let joins_prev = i > 0 && self.free[i - 1].0 + self.free[i - 1].1 == start;
        let joins_next = i < self.free.len() && start + len == self.free[i].0;
        match (joins_prev, joins_next) {
            (true, true) => {
                self.free[i - 1].1 += len + self.free[i].1;
                self.free.remove(i);
            }
            (true, false) => self.free[i - 1].1 += len,
            (false, true) => self.free[i] = (start, len + self.free[i].1),
            (false, false) => self.free.insert(i, (start, len)),
        }
    }
}

/// The three pools of a region.
#[derive(Debug)]
struct Pools {
    /// Byte offsets in `[0, rings_off)`, in `IF_UNIT` multiples.
    ifs: Extents,
    /// Byte offsets in `[rings_off, bufs_off)`, in `RING_UNIT` multiples.
    rings: Extents,
    /// Buffer indices in `[RESERVED_BUFS, nbufs)`.
    bufs: Extents,
}

/// One parent's shared memory: an anonymous mapping and its allocator.
struct Region {
    base: NonNull<u8>,
    len: usize,
    mem_id: u16,
    /// Offset of buffer 0.
    bufs_off: usize,
    pools: Mutex<Pools>,
}

// SAFETY: `base` names a private anonymous mapping owned by this value and
// unmapped only by its `Drop`; the memory is shared, by design, between the
// threads that drive the rings, and is only accessed through raw pointers
// and atomics (see the module docs), while the allocator state is behind a
// mutex. Nothing in `Region` is tied to the thread that made it.
unsafe impl Send for Region {}
// SAFETY: as above: `&Region` gives only the base address, immutable sizes
// and the mutex-protected allocator.
unsafe impl Sync for Region {}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("base", &self.base)
            .field("len", &self.len)
            .field("mem_id", &self.mem_id)
            .finish_non_exhaustive()
    }
}

impl Region {
    /// Reserves a region, trying smaller sizes if the larger ones are refused.
    fn new(mem_id: u16) -> io::Result<Region> {
        let mut err = errno(libc::ENOMEM);
        for len in REGION_SIZES.iter().filter_map(|&s| usize::try_from(s).ok()) {
            // SAFETY: a fresh private anonymous mapping at an address the
            // kernel picks; it cannot overlap any memory in use.
            let p = unsafe {
                libc::mmap(
                    ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                err = io::Error::last_os_error();
                continue;
            }
            let Some(base) = NonNull::new(p.cast::<u8>()) else {
                // SAFETY: `p..p+len` is the mapping just made, used by nothing.
                unsafe { libc::munmap(p, len) };
                continue;
            };
            // The pools: 1/1024 of the region for netmap_if objects, up to
            // 1/16 for rings, the rest for buffers.
            let rings_off = len / 1024;
            let bufs_off = len / 16;
            let nbufs = ((len - bufs_off) / BUF_SIZE).min(u32::MAX as usize);
            return Ok(Region {
                base,
                len,
                mem_id,
                bufs_off,
                pools: Mutex::new(Pools {
                    ifs: Extents::new(0, rings_off),
                    rings: Extents::new(rings_off, bufs_off - rings_off),
                    bufs: Extents::new(RESERVED_BUFS, nbufs - RESERVED_BUFS),
                }),
            });
        }
        Err(err)
    }

    /// The address `off` bytes into the region.
    fn at(&self, off: usize) -> *mut u8 {
        debug_assert!(off <= self.len);
        self.base.as_ptr().wrapping_add(off)
    }

    fn alloc_if(&self, bytes: usize) -> io::Result<usize> {
        let bytes = bytes.next_multiple_of(IF_UNIT);
        lock(&self.pools)
            .ifs
            .alloc(bytes)
            .ok_or_else(|| errno(libc::ENOMEM))
    }

    fn free_if(&self, off: usize, bytes: usize) {
        lock(&self.pools)
            .ifs
            .release(off, bytes.next_multiple_of(IF_UNIT));
    }

    /// Rings and buffers for a new pipe: `(ring bytes offset, first buffer)`.
    fn alloc_pipe(&self, ring_bytes: usize, nbufs: usize) -> io::Result<(usize, usize)> {
        let mut pools = lock(&self.pools);
        let rings = pools.rings.alloc(ring_bytes).ok_or_else(|| errno(libc::ENOMEM))?;
        match pools.bufs.alloc(nbufs) {
            Some(bufs) => Ok((rings, bufs)),
            None => {
                pools.rings.release(rings, ring_bytes);
                Err(errno(libc::ENOMEM))
            }
        }
    }

    fn free_pipe(&self, rings: usize, ring_bytes: usize, bufs: usize, nbufs: usize) {
        self.discard(rings, ring_bytes);
        self.discard(self.bufs_off + bufs * BUF_SIZE, nbufs * BUF_SIZE);
        let mut pools = lock(&self.pools);
        pools.rings.release(rings, ring_bytes);
        pools.bufs.release(bufs, nbufs);
    }

    /// Gives the whole pages of `[off, off + len)` back to the OS; they read
    /// as zeros when next touched.
    fn discard(&self, off: usize, len: usize) {
        let page = page_size();
        let start = off.next_multiple_of(page);
        let end = (off + len) / page * page;
        if end > start {
            // SAFETY: `[start, end)` lies inside this region's mapping;
            // MADV_DONTNEED on a private anonymous mapping only drops page
            // contents, here of a pipe that no ring handle uses any more.
            unsafe {
                libc::madvise(self.at(start).cast(), end - start, libc::MADV_DONTNEED);
            }
        }
    }
}

fn page_size() -> usize {
    static PAGE: LazyLock<usize> = LazyLock::new(|| {
        // SAFETY: sysconf reads a system constant and has no preconditions.
        let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(v).ok().filter(|&v| v > 0).unwrap_or(4096)
    });
    *PAGE
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `base..base+len` is the mapping made in `new`; no pipe and
        // no `Mapping` refer to it any more (both hold an `Arc<Region>`).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

// ---------------------------------------------------------------------------
// Shared-memory access.

// ---------------------------------------------------------------------------
// Pipes.

/// The kernel-private state of one ring (a kring).
#[derive(Debug, Clone)]
struct Kring {
    /// First slot the kernel has not yet processed (TX) or that the user
    /// still holds (RX).
    hwcur: u32,
    /// The `tail` the user was last given.
    hwtail: u32,
    /// The `hwtail` the peer has made available, taken at the next sync.
    pipe_tail: u32,
    /// The user's `cur` at the last sync.
    rcur: u32,
    /// Handles that have bound this ring (netmap's `users` is their count).
    /// Each gets the ring's readiness edges.
    binders: Vec<Arc<Notifier>>,
    /// Bound by a handle that asked for `NR_EXCLUSIVE` (netmap's
    /// `NKR_EXCLUSIVE`): it is then the only binder, and no other may join.
    exclusive: bool,
}

impl Kring {
    /// Whether a request (`exclusive` or not) may bind this ring, by the
    /// module's rule (`netmap_krings_get`): not if an exclusive binder holds
    /// it, nor, for an exclusive request, if anyone does.
    fn bindable(&self, exclusive: bool) -> bool {
        !self.exclusive && (!exclusive || self.binders.is_empty())
    }

    /// Sends `edge` to every binder.
    fn notify(&self, edge: fn(&Notifier)) {
        for n in &self.binders {
            edge(n);
        }
    }
}

/// What the pipe's mutex protects.
#[derive(Debug)]
struct PipeState {
    /// Indexed by `Pipe::kidx`.
    krings: Vec<Kring>,
    /// Bumped whenever one end makes the other's rings ready.
    generation: u64,
    /// Threads waiting in `poll`.
    waiters: usize,
}

/// A master/slave pair (`4 * nrings` rings in its parent's region), or a
/// loopback port: a lone master end whose TX ring `i` feeds its own RX ring
/// `i` (`2 * nrings` rings), which stands in for an interface looped back by
/// cable.
struct Pipe {
    region: Arc<Region>,
    name: Vec<u8>,
    /// 2 for a pipe, 1 for a loopback port.
    ends: usize,
    nrings: u32,
    nslots: u32,
    /// Bytes from one ring to the next.
    ring_stride: usize,
    /// Region offset of the first ring.
    rings_off: usize,
    /// First of this pipe's `ends * nrings * nslots` buffers.
    bufs_first: usize,
    state: Mutex<PipeState>,
    /// Signalled, under `state`, when `generation` moves and someone waits.
    changed: Condvar,
}

impl fmt::Debug for Pipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipe")
            .field("name", &String::from_utf8_lossy(&self.name))
            .field("mem_id", &self.region.mem_id)
            .field("nrings", &self.nrings)
            .field("nslots", &self.nslots)
            .finish_non_exhaustive()
    }
}

impl Pipe {
    fn new(region: Arc<Region>, name: &PortName, nrings: u32, nslots: u32) -> io::Result<Pipe> {
        let ring_stride = (RING_HDR + nslots as usize * SLOT_SIZE).next_multiple_of(RING_UNIT);
        let ends = if name.id.is_some() { 2 } else { 1 };
        let nk = 2 * ends * nrings as usize;
        let nbufs = ends * nrings as usize * nslots as usize;
        let (rings_off, bufs_first) = region.alloc_pipe(nk * ring_stride, nbufs)?;
        let n = nslots;
        let pipe = Pipe {
            region,
            name: match &name.id {
                Some(id) => [&name.parent[..], b"{", id].concat(),
                None => name.parent.clone(),
            },
            ends,
            nrings,
            nslots,
            ring_stride,
            rings_off,
            bufs_first,
            state: Mutex::new(PipeState {
                krings: (0..nk)
                    .map(|k| {
                        let tx = (k / nrings as usize) % 2 == Dir::Tx as usize;
                        let tail = if tx { n - 1 } else { 0 };
                        Kring {
                            hwcur: 0,
                            hwtail: tail,
                            pipe_tail: tail,
                            rcur: 0,
                            binders: Vec::new(),
                            exclusive: false,
                        }
                    })
                    .collect(),
                generation: 0,
                waiters: 0,
            }),
            changed: Condvar::new(),
        };
        for k in 0..nk {
            pipe.init_ring(k);
        }
        Ok(pipe)
    }

    /// Writes ring `k`'s header and slots into its freshly allocated space.
    fn init_ring(&self, k: usize) {
        let (end, dir, id) = self.decompose(k);
        let n = self.nslots;
        let off = self.rings_off + k * self.ring_stride;
        let r = self.region.at(off).cast::<netmap_ring>();
        // Both rings of a pair hold the buffers of the TX ring's end, at the
        // same positions.
        let tx_end = if dir == Dir::Tx { end } else { self.ends - 1 - end };
        let first = self.bufs_first + (tx_end * self.nrings as usize + id as usize) * n as usize;
        let tail = if dir == Dir::Tx { n - 1 } else { 0 };
        // SAFETY: `[off, off + ring_stride)` was just allocated to this pipe
        // from the ring pool, inside the mapped region, 128-aligned; no user
        // has been told about it yet, so plain writes do not race.
        unsafe {
            ptr::write_bytes(r.cast::<u8>(), 0, self.ring_stride);
            ptr::addr_of_mut!((*r).buf_ofs).write(self.region.bufs_off as i64 - off as i64);
            ptr::addr_of_mut!((*r).num_slots).write(n);
            ptr::addr_of_mut!((*r).nr_buf_size).write(BUF_SIZE as u32);
            ptr::addr_of_mut!((*r).ringid).write(id as u16);
            ptr::addr_of_mut!((*r).dir).write(dir as u16);
            ptr::addr_of_mut!((*r).tail).write(tail);
            let slots = r.cast::<u8>().add(RING_HDR).cast::<netmap_slot>();
            for i in 0..n as usize {
                ptr::addr_of_mut!((*slots.add(i)).buf_idx).write((first + i) as u32);
            }
        }
    }

    /// `(end, dir, ring id)` of kring `k`.
    fn decompose(&self, k: usize) -> (usize, Dir, u32) {
        let q = k / self.nrings as usize;
        let dir = if q % 2 == 0 { Dir::Tx } else { Dir::Rx };
        (q / 2, dir, (k % self.nrings as usize) as u32)
    }

    fn kidx(&self, end: End, dir: Dir, id: u32) -> usize {
        (end as usize * 2 + dir as usize) * self.nrings as usize + id as usize
    }

    /// The kring paired with `k`: the other direction of the other end (of
    /// the same end, for a loopback port), same ring id.
    fn peer(&self, k: usize) -> usize {
        let q = k / self.nrings as usize;
        (2 * self.ends - 1 - q) * self.nrings as usize + k % self.nrings as usize
    }

    fn nkrings(&self) -> usize {
        2 * self.ends * self.nrings as usize
    }

    fn ring_off(&self, k: usize) -> usize {
        self.rings_off + k * self.ring_stride
    }

    fn ring(&self, k: usize) -> SharedRing<'_> {
        debug_assert!(k < self.nkrings());
        let ring = NonNull::new(self.region.at(self.ring_off(k))).expect("ring in region");
        // SAFETY: ring `k` of this pipe lies in its region, `RING_UNIT`
        // aligned, initialized with its slots at creation; the region stays
        // mapped while `self` (holding its `Arc`) is borrowed; the pipe's
        // code keeps slot indices below the ring's `num_slots`.
        unsafe { SharedRing::new(ring) }
    }

    fn lock(&self) -> MutexGuard<'_, PipeState> {
        lock(&self.state)
    }

    /// Tells `poll` waiters that something changed.
    fn wake(&self, st: &mut PipeState) {
        st.generation = st.generation.wrapping_add(1);
        if st.waiters > 0 {
            self.changed.notify_all();
        }
    }

    /// The kernel's checks before a sync: `head` and `cur` must lie in
    /// `[hwcur, hwtail]` (for TX, `hwcur` is the last `head` and `hwtail` the
    /// last `tail` given). On failure the user's view is reset.
    fn prologue(&self, st: &mut PipeState, k: usize) -> Option<u32> {
        let ring = self.ring(k);
        let kr = &mut st.krings[k];
        let (head, cur) = ring.head_cur();
        let n = self.nslots;
        if head < n && cur < n && within(head, kr.hwcur, kr.hwtail) && within(cur, head, kr.hwtail) {
            kr.rcur = cur;
            Some(head)
        } else {
            ring.reset(kr.hwcur, kr.hwtail);
            kr.rcur = kr.hwcur;
            None
        }
    }

    /// `NIOCTXSYNC` on TX kring `k`; `false` on a prologue violation.
    fn txsync(&self, st: &mut PipeState, k: usize) -> bool {
        let Some(head) = self.prologue(st, k) else {
            return false;
        };
        let n = self.nslots;
        let ring = self.ring(k);
        let p = self.peer(k);
        let kr = &mut st.krings[k];
        // Room the peer released since the last sync.
        kr.hwtail = kr.pipe_tail;
        let mut publish = None;
        if head != kr.hwcur {
            let peer = self.ring(p);
            let mut i = kr.hwcur;
            while i != head {
                let s = ring.load(i);
                peer.store(i, s);
                if s.flags & NS_BUF_CHANGED != 0 {
                    ring.set_flags(i, s.flags & !NS_BUF_CHANGED);
                }
                i = next(i, n);
                if s.flags & NS_MOREFRAG == 0 {
                    // Only whole packets reach the peer.
                    publish = Some(i);
                }
            }
            kr.hwcur = head;
        }
        ring.set_tail(kr.hwtail);
        if let Some(t) = publish {
            let pk = &mut st.krings[p];
            pk.pipe_tail = t;
            pk.notify(Notifier::readable);
            self.wake(st);
        }
        true
    }

    /// `NIOCRXSYNC` on RX kring `k`; `false` on a prologue violation.
    fn rxsync(&self, st: &mut PipeState, k: usize) -> bool {
        let Some(head) = self.prologue(st, k) else {
            return false;
        };
        let n = self.nslots;
        let ring = self.ring(k);
        let p = self.peer(k);
        let kr = &mut st.krings[k];
        // Packets the peer published since the last sync.
        kr.hwtail = kr.pipe_tail;
        let released = head != kr.hwcur;
        if released {
            let peer = self.ring(p);
            let mut i = kr.hwcur;
            while i != head {
                // The released slot (maybe with a swapped buffer) goes back
                // to the sender's ring as free room.
                let s = ring.load(i);
                peer.store(i, s);
                if s.flags & NS_BUF_CHANGED != 0 {
                    ring.set_flags(i, s.flags & !NS_BUF_CHANGED);
                }
                i = next(i, n);
            }
            kr.hwcur = head;
        }
        ring.stamp();
        ring.set_tail(kr.hwtail);
        if released {
            let pk = &mut st.krings[p];
            pk.pipe_tail = prev(head, n);
            // A writable edge only where the last txsync left the ring
            // full: a user that saw room is not waiting for more.
            if pk.rcur == pk.hwtail {
                pk.notify(Notifier::writable);
            }
            self.wake(st);
        }
        true
    }

    /// Whether RX kring `k` has packets the user has not seen (`cur` short of
    /// `tail`) after its last sync.
    fn unseen(st: &PipeState, k: usize) -> bool {
        st.krings[k].rcur != st.krings[k].hwtail
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        let nbufs = self.ends * self.nrings as usize * self.nslots as usize;
        self.region.free_pipe(
            self.rings_off,
            self.nkrings() * self.ring_stride,
            self.bufs_first,
            nbufs,
        );
    }
}

// ---------------------------------------------------------------------------
// Readiness.

/// A handle's eventfd, driven so that epoll/mio see netmap's readiness.
///
/// netmap's own `poll` reports `POLLIN` when, after an rxsync, a bound RX
/// ring has slots between `cur` and `tail` (packets the user has not seen),
/// and `POLLOUT` when, after a txsync, a bound TX ring has room between `cur`
/// and `tail`; the kernel wakes sleepers whenever a sync of the peer changes
/// either. An eventfd is readable while its counter is non-zero and (almost)
/// always writable, and it wakes epoll with `EPOLLIN` on a write and with
/// `EPOLLOUT` on a read that takes a non-zero counter. The rule, applied
/// under the pipe's mutex so that it cannot interleave with a sync:
///
/// * **readable**: the counter is non-zero exactly while a bound RX ring may
///   hold packets the user has not seen. A peer TX sync that publishes
///   packets into a ring of this handle writes 1 (a readable edge, and a
///   wake-up of `EPOLLIN` waiters even when the counter was already
///   non-zero, since these are new packets). An RX sync of this handle
///   after which no bound RX ring has unseen packets reads the counter back
///   to 0. Binding a ring that already holds packets writes 1.
/// * **writable**: a peer RX sync that frees room in a TX ring of this handle
///   whose last txsync left it full (`cur` at `tail`: the user is waiting for
///   room, as a mio handler waits for `WRITABLE`) produces an `EPOLLOUT` edge
///   without changing readability. If the counter is non-zero it is read and
///   1 written back (the write also wakes `EPOLLIN` waiters, but they are
///   rightly readable then); if it is zero, 1 is written and read back at
///   once, so an epoll that harvests after the read reports only `EPOLLOUT`
///   (a readable report is possible only for a waiter that harvests between
///   the two calls). A ring that still had room gets no edge: its user is
///   not waiting, and every edge opens that window for a spurious readable
///   report (in a ping-pong, where the TX ring never fills, an edge on every
///   release made up to a few in a hundred polls find nothing).
///
/// The fd reports `POLLOUT` at all times, so only its edges carry the TX
/// meaning: a level-triggered caller should use [`KernelFd::poll`], which
/// checks the rings as netmap does. The counter must not be read by anyone
/// else, or its state drifts from `armed` until the next drain.
#[derive(Debug)]
struct Notifier {
    efd: OwnedFd,
    /// Whether the counter is non-zero; changed only under the pipe's mutex.
    armed: AtomicBool,
}

impl Notifier {
    fn new() -> io::Result<Notifier> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new
        // file descriptor that nothing else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Notifier {
            // SAFETY: `fd` was just opened and is owned by no one else.
            efd: unsafe { OwnedFd::from_raw_fd(fd) },
            armed: AtomicBool::new(false),
        })
    }

    /// Adds 1 to the counter (wakes `EPOLLIN` waiters).
    fn add(&self) {
        let one: u64 = 1;
        // SAFETY: the fd is a live eventfd owned by `self`; the buffer is 8
        // readable bytes, the size an eventfd write takes. A failure (the
        // counter at its maximum) leaves it readable, which is all we want.
        unsafe { libc::write(self.efd.as_raw_fd(), ptr::addr_of!(one).cast(), 8) };
    }

    /// Reads the counter back to 0 (wakes `EPOLLOUT` waiters if it was not 0).
    fn take(&self) {
        let mut v: u64 = 0;
        // SAFETY: the fd is a live eventfd owned by `self`; the buffer is 8
        // writable bytes. EAGAIN (counter already 0) is the wanted state.
        unsafe { libc::read(self.efd.as_raw_fd(), ptr::addr_of_mut!(v).cast(), 8) };
    }

    fn readable(&self) {
        self.add();
        self.armed.store(true, Ordering::Relaxed);
    }

    fn drain(&self) {
        if self.armed.swap(false, Ordering::Relaxed) {
            self.take();
        }
    }

    fn writable(&self) {
        if self.armed.load(Ordering::Relaxed) {
            self.take();
            self.add();
        } else {
            self.add();
            self.take();
        }
    }
}

// ---------------------------------------------------------------------------
// Handles.

/// One open handle of the embedded kernel: `open("/dev/netmap")`.
pub(crate) struct EmuFd {
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
            room |= st.krings[k].rcur != st.krings[k].hwtail;
        }
        (room, ok)
    }

    /// rxsyncs every bound RX ring: `(unseen packets, all prologues ok)`;
    /// drains the eventfd when nothing is left unseen.
    fn rxsync_all(&self, st: &mut PipeState, notifier: &Notifier) -> (bool, bool) {
        let (mut unseen, mut ok) = (false, true);
        for k in self.rx_krings() {
            ok &= self.pipe.rxsync(st, k);
            unseen |= Pipe::unseen(st, k);
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
            // The module's `netmap_krings_put`: leave each ring, and drop
            // the exclusive flag if this handle set it.
            let mut st = reg.pipe.lock();
            for k in reg.tx_krings().chain(reg.rx_krings()) {
                let kr = &mut st.krings[k];
                if let Some(i) = kr.binders.iter().position(|n| Arc::ptr_eq(n, &self.notifier)) {
                    kr.binders.swap_remove(i);
                }
                if reg.exclusive {
                    kr.exclusive = false;
                }
            }
            drop(st);
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

impl EmuFd {
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
        let mut st = pipe.lock();
        let krings: Vec<usize> = reg.tx_krings().chain(reg.rx_krings()).collect();
        // The module's `netmap_krings_get`: every selected ring must take
        // this binder, or none is bound.
        if !krings.iter().all(|&k| st.krings[k].bindable(reg.exclusive)) {
            drop(st);
            pipe.region.free_if(reg.nifp_off, reg.nifp_len);
            return Err(errno(libc::EBUSY));
        }
        write_if(&reg, &name.full);
        let mut pending = false;
        for &k in &krings {
            let kr = &mut st.krings[k];
            if kr.binders.is_empty() {
                // The first binder finds the ring as the kernel left it;
                // later ones share the view the others are driving.
                kr.rcur = kr.hwcur;
                pipe.ring(k).reset(kr.hwcur, kr.hwtail);
            }
            kr.binders.push(Arc::clone(&self.notifier));
            kr.exclusive |= reg.exclusive;
            if pipe.decompose(k).1 == Dir::Rx && kr.pipe_tail != kr.hwcur {
                pending = true;
            }
        }
        if pending {
            self.notifier.readable();
        }
        drop(st);

        req.nr_offset = reg.nifp_off as u64;
        req.nr_memsize = pipe.region.len as u64;
        req.nr_tx_slots = pipe.nslots;
        req.nr_rx_slots = pipe.nslots;
        req.nr_tx_rings = pipe.nrings as u16;
        req.nr_rx_rings = pipe.nrings as u16;
        req.nr_host_tx_rings = 0;
        req.nr_host_rx_rings = 0;
        req.nr_mem_id = pipe.region.mem_id;
        req.nr_extra_bufs = 0;
        self.reg = Some(reg);
        Ok(())
    }

    fn port_info(&self, name: &PortName, info: &mut nmreq_port_info_get) -> io::Result<()> {
        let pipe = lock(&self.registry)
            .find_pipe(name)
            .ok_or_else(|| errno(libc::ENOENT))?;
        info.nr_memsize = pipe.region.len as u64;
        info.nr_tx_slots = pipe.nslots;
        info.nr_rx_slots = pipe.nslots;
        info.nr_tx_rings = pipe.nrings as u16;
        info.nr_rx_rings = pipe.nrings as u16;
        info.nr_host_tx_rings = 0;
        info.nr_host_rx_rings = 0;
        info.nr_mem_id = pipe.region.mem_id;
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
        // A condvar wait takes the time left as a `Duration`: no rounding to
        // milliseconds, and no signal cuts it short.
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
            let seen = st.generation;
            st.waiters += 1;
            while st.generation == seen {
                match deadline {
                    None => st = pipe.changed.wait(st).unwrap_or_else(PoisonError::into_inner),
                    Some(d) => {
                        let now = Instant::now();
                        if now >= d {
                            st.waiters -= 1;
                            return Ok(0);
                        }
                        st = pipe
                            .changed
                            .wait_timeout(st, d - now)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                }
            }
            st.waiters -= 1;
        }
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        self.notifier.efd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::kring::{RING_CUR, RING_HEAD, RING_TAIL};
    use std::ffi::c_char;
    use std::marker::PhantomData;
    use std::sync::atomic::AtomicU32;
    use std::thread;
    use std::time::Duration;

    /// `n` milliseconds from now.
    fn ms(n: u64) -> Deadline {
        Deadline::after(Some(Duration::from_millis(n)))
    }

    // ---- A C-like client of the embedded kernel. ----

    fn header(name: &str, reqtype: u16, body: u64) -> nmreq_header {
        let mut hdr = nmreq_header {
            nr_version: NETMAP_API,
            nr_reqtype: reqtype,
            nr_body: body,
            ..Default::default()
        };
        for (d, s) in hdr.nr_name.iter_mut().zip(name.bytes()) {
            *d = c_char::from_ne_bytes([s]);
        }
        hdr
    }

    fn ctrl(fd: &mut dyn KernelFd, hdr: &mut nmreq_header) -> io::Result<()> {
        // SAFETY: every test builds `nr_body` from a live local body of the
        // type `nr_reqtype` names, and `nr_options` from live local options.
        unsafe { fd.ctrl(hdr) }
    }

    fn register_on(
        fd: &mut dyn KernelFd,
        name: &str,
        f: impl FnOnce(&mut nmreq_register),
    ) -> io::Result<nmreq_register> {
        let mut req = nmreq_register {
            nr_mode: NR_REG_ALL_NIC,
            ..Default::default()
        };
        f(&mut req);
        let mut hdr = header(name, NETMAP_REQ_REGISTER, ptr::addr_of_mut!(req) as u64);
        ctrl(fd, &mut hdr)?;
        Ok(req)
    }

    fn errno_of<T: fmt::Debug>(r: io::Result<T>) -> i32 {
        r.expect_err("the request should fail")
            .raw_os_error()
            .expect("an errno")
    }

    /// An open, registered, mapped port: what `nmport_open` returns.
    #[derive(Debug)]
    struct Port {
        map: Mapping,
        fd: Box<dyn KernelFd>,
        req: nmreq_register,
    }

    fn open_with(name: &str, f: impl FnOnce(&mut nmreq_register)) -> io::Result<Port> {
        let mut fd = emu().open()?;
        let req = register_on(&mut *fd, name, f)?;
        let map = fd.mmap(req.nr_memsize as usize)?;
        Ok(Port { map, fd, req })
    }

    fn open(name: &str) -> Port {
        open_with(name, |_| {}).expect("open")
    }

    fn open_slots(name: &str, slots: u32) -> Port {
        open_with(name, |r| {
            r.nr_tx_slots = slots;
            r.nr_rx_slots = slots;
        })
        .expect("open")
    }

    impl Port {
        fn nifp(&self) -> *mut netmap_if {
            let off = self.req.nr_offset as usize;
            assert!(off + IF_HDR <= self.map.len());
            // SAFETY: the netmap_if lies inside the mapping (checked).
            unsafe { self.map.base().as_ptr().add(off).cast() }
        }

        fn ring_ofs(&self, i: usize) -> isize {
            let nif = self.nifp();
            // SAFETY: `ring_ofs` has tx + rx entries, inside the mapping.
            unsafe { ptr::addr_of!((*nif).ring_ofs).cast::<isize>().add(i).read() }
        }

        fn ring(&self, i: usize) -> Ring<'_> {
            let ofs = self.ring_ofs(i);
            assert_ne!(ofs, 0, "ring {i} is not bound");
            Ring {
                ring: self.nifp().cast::<u8>().wrapping_offset(ofs).cast(),
                _port: PhantomData,
            }
        }

        fn tx(&self, i: usize) -> Ring<'_> {
            self.ring(i)
        }

        fn rx(&self, i: usize) -> Ring<'_> {
            self.ring(self.req.nr_tx_rings as usize + i)
        }

        fn sync(&self, dir: SyncDir) {
            self.fd.sync(dir).expect("sync");
        }

        fn readable_now(&self) -> bool {
            let mut p = libc::pollfd {
                fd: self.fd.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut p, 1, 0) };
            n == 1 && p.revents & libc::POLLIN != 0
        }
    }

    /// A ring of a mapped port, driven with raw pointers like C code does.
    #[derive(Clone, Copy)]
    struct Ring<'a> {
        ring: *mut netmap_ring,
        _port: PhantomData<&'a Port>,
    }

    impl Ring<'_> {
        fn word(&self, off: usize) -> &AtomicU32 {
            // SAFETY: the ring lies in the port's mapping, alive for 'a;
            // `off` is a u32 field of the header.
            unsafe { AtomicU32::from_ptr(self.ring.cast::<u8>().add(off).cast()) }
        }
        fn head(&self) -> u32 {
            self.word(RING_HEAD).load(Ordering::Acquire)
        }
        fn cur(&self) -> u32 {
            self.word(RING_CUR).load(Ordering::Acquire)
        }
        fn tail(&self) -> u32 {
            self.word(RING_TAIL).load(Ordering::Acquire)
        }
        fn set_head_cur(&self, head: u32, cur: u32) {
            self.word(RING_CUR).store(cur, Ordering::Release);
            self.word(RING_HEAD).store(head, Ordering::Release);
        }
        fn advance(&self, to: u32) {
            self.set_head_cur(to, to);
        }
        fn n(&self) -> u32 {
            // SAFETY: a constant header field of a live ring.
            unsafe { ptr::addr_of!((*self.ring).num_slots).read() }
        }
        /// A header field the kernel does not change after init.
        fn konst<T: Copy>(&self, off: usize) -> T {
            // SAFETY: `off` is the offset of a `T` field of a live ring's
            // header, which nobody writes after init.
            unsafe { self.ring.cast::<u8>().add(off).cast::<T>().read() }
        }
        fn dir(&self) -> u16 {
            self.konst(offset_of!(netmap_ring, dir))
        }
        fn ringid(&self) -> u16 {
            self.konst(offset_of!(netmap_ring, ringid))
        }
        fn buf_size(&self) -> u32 {
            self.konst(offset_of!(netmap_ring, nr_buf_size))
        }
        fn slot(&self, i: u32) -> *mut netmap_slot {
            assert!(i < self.n());
            // SAFETY: slot `i < num_slots` of a live ring.
            unsafe {
                self.ring
                    .cast::<u8>()
                    .add(RING_HDR)
                    .cast::<netmap_slot>()
                    .add(i as usize)
            }
        }
        fn get(&self, i: u32) -> netmap_slot {
            // SAFETY: a user-owned slot (tests only read slots in [head, tail)
            // or while no sync runs).
            unsafe { self.slot(i).read() }
        }
        fn put(&self, i: u32, s: netmap_slot) {
            // SAFETY: as in `get`.
            unsafe { self.slot(i).write(s) }
        }
        fn buf(&self, idx: u32) -> *mut u8 {
            // SAFETY: NETMAP_BUF of a live ring; the emu's buffer indices lie
            // inside the region.
            unsafe { crate::ffi::NETMAP_BUF(self.ring, idx) }
        }
        fn space(&self) -> u32 {
            let (h, t, n) = (self.head(), self.tail(), self.n());
            if t >= h {
                t - h
            } else {
                t + n - h
            }
        }
        /// Writes one slot at `head` and moves head/cur past it.
        fn send(&self, data: &[u8], flags: u16) -> bool {
            if self.space() == 0 {
                return false;
            }
            let h = self.head();
            let mut s = self.get(h);
            // SAFETY: the slot's buffer is user-owned and 2048 bytes long.
            unsafe { ptr::copy_nonoverlapping(data.as_ptr(), self.buf(s.buf_idx), data.len()) };
            s.len = data.len() as u16;
            s.flags = flags;
            self.put(h, s);
            self.advance(next(h, self.n()));
            true
        }
        /// Reads the slot at `head` and moves head/cur past it.
        fn recv(&self) -> Option<(Vec<u8>, u16)> {
            if self.space() == 0 {
                return None;
            }
            let h = self.head();
            let s = self.get(h);
            let mut v = vec![0u8; s.len as usize];
            // SAFETY: the slot is user-owned; its buffer holds `len` bytes.
            unsafe { ptr::copy_nonoverlapping(self.buf(s.buf_idx), v.as_mut_ptr(), v.len()) };
            self.advance(next(h, self.n()));
            Some((v, s.flags))
        }
    }

    fn payload(i: u32) -> Vec<u8> {
        let len = 1 + (i as usize * 7) % 1500;
        (0..len).map(|j| (i as usize + j) as u8).collect()
    }

    // ---- Tests. ----

    #[test]
    fn layout_of_a_fresh_pipe() {
        let m = open_slots("lay{0", 8);
        let s = open("lay}0");
        assert_eq!(m.req.nr_tx_slots, 8);
        assert_eq!(s.req.nr_rx_slots, 8, "the slave uses the pair's config");
        assert_eq!((m.req.nr_tx_rings, m.req.nr_rx_rings), (1, 1));
        assert_eq!((m.req.nr_host_tx_rings, m.req.nr_host_rx_rings), (0, 0));
        assert_eq!(m.req.nr_mem_id, s.req.nr_mem_id);
        assert_ne!(m.req.nr_offset, s.req.nr_offset, "one netmap_if per handle");
        let nif = m.nifp();
        // SAFETY: constant fields of a live netmap_if.
        let (ntx, nrx, name) = unsafe {
            (
                ptr::addr_of!((*nif).ni_tx_rings).read(),
                ptr::addr_of!((*nif).ni_rx_rings).read(),
                ptr::addr_of!((*nif).ni_name).read(),
            )
        };
        assert_eq!((ntx, nrx), (1, 1));
        assert_eq!(
            name[..5].iter().map(|c| c.to_ne_bytes()[0]).collect::<Vec<_>>(),
            b"lay{0"
        );
        let (tx, rx) = (m.tx(0), s.rx(0));
        assert_eq!((tx.head(), tx.cur(), tx.tail()), (0, 0, 7));
        assert_eq!((rx.head(), rx.cur(), rx.tail()), (0, 0, 0));
        assert_eq!(tx.dir(), 0);
        assert_eq!(rx.dir(), 1);
        assert_eq!(tx.buf_size(), 2048);
        let mut seen = HashSet::new();
        for i in 0..8 {
            let (a, b) = (tx.get(i), rx.get(i));
            assert_eq!(a.buf_idx, b.buf_idx, "a ring pair shares its buffers");
            assert!(a.buf_idx >= 2 && a.len == 0);
            assert!(seen.insert(a.buf_idx));
            // The buffer lies inside the region.
            let end = tx.buf(a.buf_idx) as usize + BUF_SIZE;
            assert!(end <= m.map.base().as_ptr() as usize + m.map.len());
        }
        for i in 0..8 {
            assert!(seen.insert(s.tx(0).get(i).buf_idx), "distinct buffers per pair");
        }
    }

    #[test]
    fn packets_cross_the_pipe_over_many_laps() {
        let m = open_slots("laps{1", 8);
        let s = open("laps}1");
        let (tx, rx) = (m.tx(0), s.rx(0));
        let (mut sent, mut got) = (0u32, 0u32);
        const N: u32 = 10_000;
        while got < N {
            while sent < N && tx.send(&payload(sent), 0) {
                sent += 1;
            }
            m.sync(SyncDir::Tx);
            s.sync(SyncDir::Rx);
            while let Some((data, flags)) = rx.recv() {
                assert_eq!(flags & NS_MOREFRAG, 0);
                assert_eq!(data, payload(got), "packet {got}");
                got += 1;
            }
            // Releases the slots, which become room for the master.
            s.sync(SyncDir::Rx);
        }
        assert_eq!(sent, N);
        m.sync(SyncDir::Tx);
        assert_eq!(tx.space(), 7, "every slot came back");
    }

    #[test]
    fn both_directions_and_all_rings() {
        let m = open_with("dirs{2", |r| r.nr_tx_rings = 3).unwrap();
        let s = open("dirs}2");
        assert_eq!((s.req.nr_tx_rings, s.req.nr_rx_rings), (3, 3));
        for i in 0..3 {
            assert!(m.tx(i).send(&[1, i as u8], 0));
            assert!(s.tx(i).send(&[2, i as u8], 0));
        }
        m.sync(SyncDir::Tx);
        s.sync(SyncDir::Tx);
        m.sync(SyncDir::Rx);
        s.sync(SyncDir::Rx);
        for i in 0..3 {
            assert_eq!(s.rx(i).recv().unwrap().0, [1, i as u8]);
            assert_eq!(m.rx(i).recv().unwrap().0, [2, i as u8]);
        }
    }

    #[test]
    fn morefrag_chains_are_published_whole() {
        let m = open_slots("frag{1", 8);
        let s = open("frag}1");
        let (tx, rx) = (m.tx(0), s.rx(0));
        assert!(tx.send(b"one", NS_MOREFRAG));
        assert!(tx.send(b"two", NS_MOREFRAG));
        m.sync(SyncDir::Tx);
        s.sync(SyncDir::Rx);
        assert_eq!(rx.tail(), 0, "an incomplete chain stays hidden");
        assert!(!s.readable_now());
        assert!(tx.send(b"three", 0));
        assert!(tx.send(b"next", NS_MOREFRAG));
        m.sync(SyncDir::Tx);
        s.sync(SyncDir::Rx);
        assert_eq!(rx.tail(), 3, "the chain, not the next partial packet");
        assert_eq!(rx.recv().unwrap(), (b"one".to_vec(), NS_MOREFRAG));
        assert_eq!(rx.recv().unwrap(), (b"two".to_vec(), NS_MOREFRAG));
        assert_eq!(rx.recv().unwrap(), (b"three".to_vec(), 0));
        assert!(rx.recv().is_none());
    }

    #[test]
    fn slave_without_master_is_enoent() {
        let mut fd = emu().open().unwrap();
        assert_eq!(
            errno_of(register_on(&mut *fd, "nomaster}1", |_| {})),
            libc::ENOENT
        );
        let mut info = nmreq_port_info_get::default();
        let mut hdr = header(
            "nomaster{1",
            NETMAP_REQ_PORT_INFO_GET,
            ptr::addr_of_mut!(info) as u64,
        );
        assert_eq!(errno_of(ctrl(&mut *fd, &mut hdr)), libc::ENOENT);
        // The failed attempts left the handle usable.
        let m = register_on(&mut *fd, "nomaster{1", |_| {}).unwrap();
        assert_eq!(m.nr_tx_slots, DEFAULT_SLOTS);
    }

    #[test]
    fn pair_lives_while_either_end_is_open() {
        let m = open_slots("life{1", 8);
        let s = open("life}1");
        assert!(m.tx(0).send(b"kept", 0));
        m.sync(SyncDir::Tx);
        drop(m);
        // The slave keeps the pair; a new master binds the same rings.
        let m = open("life{1");
        assert_eq!(m.req.nr_tx_slots, 8);
        assert_eq!((m.tx(0).head(), m.tx(0).tail()), (1, 7));
        s.sync(SyncDir::Rx);
        assert_eq!(s.rx(0).recv().unwrap().0, b"kept");
        drop((m, s));
        // Both ends closed: the next master makes a new pair.
        let m = open_slots("life{1", 16);
        assert_eq!(m.req.nr_tx_slots, 16);
        assert_eq!((m.tx(0).head(), m.tx(0).tail()), (0, 15));
        drop(m);
        let mut fd = emu().open().unwrap();
        assert_eq!(errno_of(register_on(&mut *fd, "life}1", |_| {})), libc::ENOENT);
    }

    /// Asks for `NR_EXCLUSIVE`.
    fn excl(r: &mut nmreq_register) {
        r.nr_flags |= NR_EXCLUSIVE;
    }

    /// Selects ring pair `id` (`NR_REG_ONE_NIC`), exclusively if `x`.
    fn one(id: u16, x: bool) -> impl FnOnce(&mut nmreq_register) {
        move |r: &mut nmreq_register| {
            r.nr_mode = NR_REG_ONE_NIC;
            r.nr_ringid = id;
            if x {
                excl(r);
            }
        }
    }

    #[test]
    fn exclusive_rings_are_busy_for_every_other_binder() {
        let _m = open_with("busy{1", |r| {
            r.nr_tx_rings = 2;
            excl(r);
        })
        .unwrap();
        let mut fd = emu().open().unwrap();
        assert_eq!(errno_of(register_on(&mut *fd, "busy{1", excl)), libc::EBUSY);
        assert_eq!(errno_of(register_on(&mut *fd, "busy{1", |_| {})), libc::EBUSY);
        assert_eq!(
            errno_of(register_on(&mut *fd, "busy{1", one(1, true))),
            libc::EBUSY
        );
        assert_eq!(
            errno_of(register_on(&mut *fd, "busy{1", one(1, false))),
            libc::EBUSY
        );
        // Slave rings are separate.
        let _s0 = open_with("busy}1", one(0, true)).unwrap();
        let _s1 = open_with("busy}1", one(1, true)).unwrap();
        assert_eq!(
            errno_of(register_on(&mut *fd, "busy}1", one(1, false))),
            libc::EBUSY
        );
        assert_eq!(errno_of(register_on(&mut *fd, "busy}1", excl)), libc::EBUSY);
        // A registered handle cannot register again, as with the module.
        let mut fd2 = emu().open().unwrap();
        register_on(&mut *fd2, "busy{2", |_| {}).unwrap();
        assert_eq!(errno_of(register_on(&mut *fd2, "busy{3", |_| {})), libc::EBUSY);
        assert_eq!(errno_of(register_on(&mut *fd2, "busy{2", |_| {})), libc::EBUSY);
    }

    #[test]
    fn shared_rings_take_any_number_of_shared_binders_and_no_exclusive_one() {
        let a = open("sh{1");
        let b = open("sh{1");
        assert_eq!(a.req.nr_mem_id, b.req.nr_mem_id);
        assert_eq!(a.tx(0).ring, b.tx(0).ring, "one ring, two binders");
        let mut fd = emu().open().unwrap();
        assert_eq!(errno_of(register_on(&mut *fd, "sh{1", excl)), libc::EBUSY);
        assert_eq!(errno_of(register_on(&mut *fd, "sh{1", one(0, true))), libc::EBUSY);
        assert_eq!(
            errno_of(register_on(&mut *fd, "sh{1", |r| {
                r.nr_flags = NR_EXCLUSIVE | NR_RX_RINGS_ONLY;
            })),
            libc::EBUSY
        );
        // Both binders get the ring's readiness edges.
        let s = open("sh}1");
        assert!(s.tx(0).send(b"to both", 0));
        s.sync(SyncDir::Tx);
        assert!(a.readable_now() && b.readable_now());
        // While one shared binder is left, the rings stay shared.
        drop(a);
        assert_eq!(errno_of(register_on(&mut *fd, "sh{1", excl)), libc::EBUSY);
        drop(b);
        register_on(&mut *fd, "sh{1", excl).unwrap();
    }

    #[test]
    fn exclusive_rings_take_no_shared_binder() {
        let x = open_with("ex{1", excl).unwrap();
        // The slave end keeps the pipe while the master's binders change.
        let _s = open("ex}1");
        let mut fd = emu().open().unwrap();
        assert_eq!(errno_of(register_on(&mut *fd, "ex{1", |_| {})), libc::EBUSY);
        assert_eq!(
            errno_of(register_on(&mut *fd, "ex{1", |r| r.nr_flags = NR_TX_RINGS_ONLY)),
            libc::EBUSY
        );
        // The refusals bound nothing; closing the exclusive binder frees
        // the rings for shared ones.
        drop(x);
        register_on(&mut *fd, "ex{1", |_| {}).unwrap();
        let _again = open("ex{1");
    }

    #[test]
    fn one_direction_of_an_end_does_not_overlap_the_other() {
        let t = open_with("tr{1", |r| r.nr_flags = NR_TX_RINGS_ONLY | NR_EXCLUSIVE).unwrap();
        let r = open_with("tr{1", |r| r.nr_flags = NR_RX_RINGS_ONLY | NR_EXCLUSIVE).unwrap();
        assert_ne!(t.ring_ofs(0), 0);
        assert_ne!(r.ring_ofs(1), 0);
        let mut fd = emu().open().unwrap();
        for flags in [NR_TX_RINGS_ONLY, NR_RX_RINGS_ONLY, 0, NR_EXCLUSIVE] {
            let got = register_on(&mut *fd, "tr{1", |r| r.nr_flags = flags);
            assert_eq!(errno_of(got), libc::EBUSY, "flags {flags:#x}");
        }
        drop(t);
        register_on(&mut *fd, "tr{1", |r| r.nr_flags = NR_TX_RINGS_ONLY).unwrap();
    }

    #[test]
    fn ring_pairs_of_one_end_are_bound_apart() {
        let p0 = open_with("pairs{1", |r| {
            r.nr_tx_rings = 2;
            one(0, true)(r);
        })
        .unwrap();
        let p1 = open_with("pairs{1", one(1, true)).unwrap();
        let _s = open("pairs}1");
        let mut fd = emu().open().unwrap();
        // All rings include ring pair 0, held exclusively.
        assert_eq!(errno_of(register_on(&mut *fd, "pairs{1", |_| {})), libc::EBUSY);
        // A failed request binds nothing: after pair 0 closes, a request
        // that also asked for pair 1 leaves pair 0 free.
        drop(p0);
        assert_eq!(errno_of(register_on(&mut *fd, "pairs{1", excl)), libc::EBUSY);
        let p0 = open_with("pairs{1", one(0, true)).unwrap();
        drop((p0, p1));
        register_on(&mut *fd, "pairs{1", excl).unwrap();
    }

    #[test]
    fn one_nic_binds_one_ring_pair() {
        let _m = open_with("one{1", |r| r.nr_tx_rings = 4).unwrap();
        let p = open_with("one}1", |r| {
            r.nr_mode = NR_REG_ONE_NIC;
            r.nr_ringid = 2;
        })
        .unwrap();
        assert_eq!(p.req.nr_mode, NR_REG_ONE_NIC);
        assert_eq!(p.req.nr_ringid, 2);
        assert_eq!((p.req.nr_tx_rings, p.req.nr_rx_rings), (4, 4));
        let bound: Vec<bool> = (0..8).map(|i| p.ring_ofs(i) != 0).collect();
        assert_eq!(bound, [false, false, true, false, false, false, true, false]);
        assert_eq!(p.tx(2).ringid(), 2);
        assert_eq!(p.rx(2).ringid(), 2);
        // A ring id past the pipe's rings.
        let mut fd = emu().open().unwrap();
        let r = register_on(&mut *fd, "one}1", |r| {
            r.nr_mode = NR_REG_ONE_NIC;
            r.nr_ringid = 4;
        });
        assert_eq!(errno_of(r), libc::EINVAL);
        // Other rings of that end are still free.
        register_on(&mut *fd, "one}1", |r| {
            r.nr_mode = NR_REG_ONE_NIC;
            r.nr_ringid = 3;
        })
        .unwrap();
    }

    #[test]
    fn one_direction_only() {
        let t = open_with("dir{1", |r| r.nr_flags = crate::ffi::NR_TX_RINGS_ONLY).unwrap();
        assert_ne!(t.ring_ofs(0), 0);
        assert_eq!(t.ring_ofs(1), 0, "no RX ring");
        // The RX rings of the same end are still free.
        let r = open_with("dir{1", |r| r.nr_flags = crate::ffi::NR_RX_RINGS_ONLY).unwrap();
        assert_eq!(r.ring_ofs(0), 0);
        assert_ne!(r.ring_ofs(1), 0);
        let s = open("dir}1");
        assert!(t.tx(0).send(b"x", 0));
        t.sync(SyncDir::Tx);
        // A TX-only handle has no RX ring to sync: nothing happens.
        t.sync(SyncDir::Rx);
        s.sync(SyncDir::Rx);
        assert_eq!(s.rx(0).recv().unwrap().0, b"x");
        assert!(s.tx(0).send(b"y", 0));
        s.sync(SyncDir::Tx);
        r.sync(SyncDir::Rx);
        assert_eq!(r.rx(0).recv().unwrap().0, b"y");
        let mut fd = emu().open().unwrap();
        let both = register_on(&mut *fd, "dir2{1", |r| {
            r.nr_flags = crate::ffi::NR_TX_RINGS_ONLY | crate::ffi::NR_RX_RINGS_ONLY;
        });
        assert_eq!(errno_of(both), libc::EINVAL);
    }

    #[test]
    fn bad_requests_are_refused() {
        let mut fd = emu().open().unwrap();
        let mut req = nmreq_register::default();
        let body = ptr::addr_of_mut!(req) as u64;

        let mut hdr = header("bad{1", NETMAP_REQ_REGISTER, body);
        hdr.nr_version = NETMAP_API + 1;
        assert_eq!(errno_of(ctrl(&mut *fd, &mut hdr)), libc::EINVAL);

        let mut hdr = header("bad{1", NETMAP_REQ_REGISTER, body);
        hdr.nr_reserved = 1;
        assert_eq!(errno_of(ctrl(&mut *fd, &mut hdr)), libc::EINVAL);

        let mut hdr = header("bad{1", crate::ffi::NETMAP_REQ_VALE_LIST, body);
        assert_eq!(errno_of(ctrl(&mut *fd, &mut hdr)), libc::EOPNOTSUPP);

        for name in ["", "{1", "bad{", "bad}"] {
            let mut hdr = header(name, NETMAP_REQ_REGISTER, body);
            assert_eq!(errno_of(ctrl(&mut *fd, &mut hdr)), libc::EINVAL, "{name}");
        }
        let mut hdr = header("bad{1", NETMAP_REQ_REGISTER, 0);
        assert_eq!(errno_of(ctrl(&mut *fd, &mut hdr)), libc::EINVAL, "no body");

        for mode in [
            crate::ffi::NR_REG_SW,
            crate::ffi::NR_REG_NIC_SW,
            crate::ffi::NR_REG_ONE_SW,
            99,
        ] {
            let r = register_on(&mut *fd, "bad{1", |r| r.nr_mode = mode);
            assert_eq!(errno_of(r), libc::EINVAL, "mode {mode}");
        }

        let mut opt2 = nmreq_option {
            nro_reqtype: crate::ffi::NETMAP_REQ_OPT_OFFSETS,
            ..Default::default()
        };
        let mut opt1 = nmreq_option {
            nro_next: ptr::addr_of_mut!(opt2) as u64,
            nro_reqtype: crate::ffi::NETMAP_REQ_OPT_EXTMEM,
            ..Default::default()
        };
        let mut hdr = header("bad{1", NETMAP_REQ_REGISTER, body);
        hdr.nr_options = ptr::addr_of_mut!(opt1) as u64;
        assert_eq!(errno_of(ctrl(&mut *fd, &mut hdr)), libc::EOPNOTSUPP);
        assert_eq!(opt1.nro_status, libc::EOPNOTSUPP as u32);
        assert_eq!(opt2.nro_status, libc::EOPNOTSUPP as u32);

        // None of that registered anything; mmap and sync say so.
        assert_eq!(errno_of(fd.mmap(4096)), libc::EINVAL);
        assert_eq!(errno_of(fd.sync(SyncDir::Tx)), libc::ENXIO);
        assert_eq!(fd.poll(libc::POLLIN, ms(0)).unwrap(), libc::POLLERR);
        // The pipe "bad{1" was never made.
        let mut info = nmreq_port_info_get::default();
        let mut hdr = header("bad}1", NETMAP_REQ_PORT_INFO_GET, ptr::addr_of_mut!(info) as u64);
        assert_eq!(errno_of(ctrl(&mut *fd, &mut hdr)), libc::ENOENT);

        let req = register_on(&mut *fd, "bad{1", |_| {}).unwrap();
        assert_eq!(errno_of(fd.mmap(req.nr_memsize as usize + 1)), libc::EINVAL);
        assert!(fd.mmap(4096).is_ok());
    }

    #[test]
    fn shapes_are_clamped_and_reported() {
        let p = open_with("shape{1", |r| {
            r.nr_tx_rings = 2;
            r.nr_rx_rings = 5;
            r.nr_tx_slots = 100_000;
            r.nr_rx_slots = 0;
        })
        .unwrap();
        assert_eq!((p.req.nr_tx_rings, p.req.nr_rx_rings), (5, 5));
        assert_eq!((p.req.nr_tx_slots, p.req.nr_rx_slots), (MAX_SLOTS, MAX_SLOTS));
        let q = open_with("shape{2", |r| {
            r.nr_tx_rings = 1000;
            r.nr_tx_slots = 1;
        })
        .unwrap();
        assert_eq!(q.req.nr_tx_rings as u32, MAX_RINGS);
        assert_eq!(q.req.nr_tx_slots, MIN_SLOTS);
    }

    #[test]
    fn a_bare_name_is_a_loopback_port() {
        let mut fd = emu().open().unwrap();
        let mut info = nmreq_port_info_get::default();
        let mut hdr = header("loop", NETMAP_REQ_PORT_INFO_GET, ptr::addr_of_mut!(info) as u64);
        assert_eq!(errno_of(ctrl(&mut *fd, &mut hdr)), libc::ENOENT, "not made yet");
        let p = open_with("loop", |r| {
            r.nr_tx_rings = 2;
            r.nr_tx_slots = 8;
            excl(r);
        })
        .unwrap();
        assert_eq!((p.req.nr_tx_rings, p.req.nr_rx_rings), (2, 2));
        ctrl(&mut *fd, &mut hdr).unwrap();
        assert_eq!(info.nr_mem_id, p.req.nr_mem_id);
        for i in 0..2 {
            let (tx, rx) = (p.tx(i), p.rx(i));
            for k in 0..8 {
                assert_eq!(tx.get(k).buf_idx, rx.get(k).buf_idx, "a pair shares buffers");
            }
            assert!(tx.send(&[i as u8; 3], 0));
        }
        assert!(!p.readable_now());
        p.sync(SyncDir::Tx);
        assert!(p.readable_now(), "its own TX made it readable");
        p.sync(SyncDir::Rx);
        assert_eq!(p.rx(0).recv().unwrap().0, [0; 3]);
        assert_eq!(p.rx(1).recv().unwrap().0, [1; 3]);
        p.sync(SyncDir::Rx);
        assert!(!p.readable_now());
        // Laps over the small ring, driven through poll.
        for n in 0..100u32 {
            assert!(p.tx(1).send(&n.to_le_bytes(), 0));
            assert_eq!(p.fd.poll(libc::POLLIN, ms(1000)).unwrap(), libc::POLLIN);
            assert_eq!(p.rx(1).recv().unwrap().0, n.to_le_bytes());
        }
        // Its rings can be held exclusively too, and its pipes share its
        // region.
        assert_eq!(errno_of(register_on(&mut *fd, "loop", |_| {})), libc::EBUSY);
        let q = open("loop{1");
        assert_eq!(q.req.nr_mem_id, p.req.nr_mem_id);
        drop(p);
        let p = open("loop");
        assert_eq!(
            p.req.nr_tx_slots, DEFAULT_SLOTS,
            "its last handle closed: made anew"
        );
    }

    #[test]
    fn the_largest_shape_fits() {
        let p = open_with("huge{1", |r| {
            r.nr_tx_rings = MAX_RINGS as u16;
            r.nr_tx_slots = MAX_SLOTS;
        })
        .unwrap();
        let s = open("huge}1");
        let last = MAX_RINGS as usize - 1;
        assert!(p.tx(last).send(b"far", 0));
        p.sync(SyncDir::Tx);
        s.sync(SyncDir::Rx);
        assert_eq!(s.rx(last).recv().unwrap().0, b"far");
        assert_eq!(s.rx(last).tail(), 1);
        // Small pipes still fit beside it.
        let q = open("huge{2");
        assert_eq!(q.req.nr_mem_id, p.req.nr_mem_id);
    }

    #[test]
    fn default_mode_binds_everything() {
        let p = open_with("dflt{1", |r| {
            r.nr_mode = NR_REG_DEFAULT;
            r.nr_rx_rings = 2;
        })
        .unwrap();
        assert_eq!(p.req.nr_mode, NR_REG_DEFAULT, "echoed");
        assert!((0..4).all(|i| p.ring_ofs(i) != 0));
    }

    #[test]
    fn port_info_describes_an_existing_pair() {
        let m = open_with("info{1", |r| {
            r.nr_tx_rings = 2;
            r.nr_tx_slots = 64;
        })
        .unwrap();
        let mut fd = emu().open().unwrap();
        let mut info = nmreq_port_info_get::default();
        let mut hdr = header("info}1", NETMAP_REQ_PORT_INFO_GET, ptr::addr_of_mut!(info) as u64);
        ctrl(&mut *fd, &mut hdr).unwrap();
        assert_eq!(info.nr_memsize, m.req.nr_memsize);
        assert_eq!((info.nr_tx_slots, info.nr_rx_slots), (64, 64));
        assert_eq!((info.nr_tx_rings, info.nr_rx_rings), (2, 2));
        assert_eq!(info.nr_mem_id, m.req.nr_mem_id);
    }

    #[test]
    fn prologue_violations_reset_the_ring() {
        let m = open_slots("prol{1", 8);
        let s = open("prol}1");
        let tx = m.tx(0);
        assert!(tx.send(b"a", 0));
        m.sync(SyncDir::Tx);
        assert_eq!((tx.head(), tx.tail()), (1, 7));
        // head past tail.
        tx.set_head_cur(0, 0);
        assert_eq!(
            errno_of(m.fd.sync(SyncDir::Tx)),
            libc::EINVAL,
            "head behind hwcur"
        );
        assert_eq!((tx.head(), tx.cur(), tx.tail()), (1, 1, 7));
        tx.set_head_cur(2, 1);
        assert_eq!(errno_of(m.fd.sync(SyncDir::Tx)), libc::EINVAL, "cur behind head");
        assert_eq!((tx.head(), tx.cur(), tx.tail()), (1, 1, 7));
        tx.set_head_cur(1, 99);
        assert_eq!(errno_of(m.fd.sync(SyncDir::Tx)), libc::EINVAL, "cur out of range");
        // The ring still works after a reset.
        assert!(tx.send(b"b", 0));
        m.sync(SyncDir::Tx);
        let rx = s.rx(0);
        s.sync(SyncDir::Rx);
        assert_eq!(rx.tail(), 2);
        rx.set_head_cur(3, 3);
        assert_eq!(errno_of(s.fd.sync(SyncDir::Rx)), libc::EINVAL, "head past tail");
        assert_eq!((rx.head(), rx.cur(), rx.tail()), (0, 0, 2));
        // The tail the user scribbles over is restored.
        s.fd.sync(SyncDir::Rx).unwrap();
        rx.word(RING_TAIL).store(5, Ordering::Relaxed);
        s.sync(SyncDir::Rx);
        assert_eq!(rx.tail(), 2);
        // poll reports the error too.
        rx.set_head_cur(4, 4);
        assert_ne!(s.fd.poll(libc::POLLIN, ms(0)).unwrap() & libc::POLLERR, 0);
        assert_eq!(rx.recv().unwrap().0, b"a");
        assert_eq!(rx.recv().unwrap().0, b"b");
    }

    #[test]
    fn wrapped_views_pass_the_prologue() {
        let m = open_slots("wrap{1", 4);
        let s = open("wrap}1");
        let (tx, rx) = (m.tx(0), s.rx(0));
        for round in 0..20u8 {
            // Fill the ring up to the slot the kernel keeps.
            let mut k = 0;
            while tx.send(&[round, k], 0) {
                k += 1;
            }
            assert_eq!(k, 3);
            m.sync(SyncDir::Tx);
            s.sync(SyncDir::Rx);
            // Take one, then release it alone while two stay unseen.
            assert_eq!(rx.recv().unwrap().0, [round, 0]);
            s.sync(SyncDir::Rx);
            assert!(s.readable_now());
            assert_eq!(rx.recv().unwrap().0, [round, 1]);
            assert_eq!(rx.recv().unwrap().0, [round, 2]);
            s.sync(SyncDir::Rx);
            assert!(!s.readable_now());
            m.sync(SyncDir::Tx);
        }
    }

    #[test]
    fn buffers_swap_between_pipes_of_one_parent() {
        let m = open_slots("swap{1", 8);
        let s = open("swap}1");
        let other = open_slots("swap{2", 8);
        assert_eq!(other.req.nr_mem_id, m.req.nr_mem_id);
        let (tx, rx, otx) = (m.tx(0), s.rx(0), other.tx(0));
        assert!(tx.send(b"swapped", 0));
        m.sync(SyncDir::Tx);
        s.sync(SyncDir::Rx);
        // Forward the received buffer to the other pipe by index swap.
        let (mut a, mut b) = (rx.get(0), otx.get(0));
        let (ra, rb) = (a.buf_idx, b.buf_idx);
        std::mem::swap(&mut a.buf_idx, &mut b.buf_idx);
        a.flags |= NS_BUF_CHANGED;
        b.flags |= NS_BUF_CHANGED;
        b.len = a.len;
        rx.put(0, a);
        otx.put(0, b);
        rx.advance(1);
        otx.advance(1);
        s.sync(SyncDir::Rx);
        other.sync(SyncDir::Tx);
        assert_eq!(rx.get(0).flags & NS_BUF_CHANGED, 0, "cleared by rxsync");
        assert_eq!(otx.get(0).flags & NS_BUF_CHANGED, 0, "cleared by txsync");
        let os = open("swap}2");
        os.sync(SyncDir::Rx);
        let (data, _) = os.rx(0).recv().unwrap();
        assert_eq!(data, b"swapped");
        assert_eq!(os.rx(0).get(0).buf_idx, ra);
        // The master's ring got the buffer that replaced it.
        m.sync(SyncDir::Tx);
        assert_eq!(tx.get(0).buf_idx, rb);
    }

    #[test]
    fn memory_ids_follow_parents() {
        let a = open("memA{1");
        let b = open("memA{2");
        let c = open("memB{1");
        assert_eq!(a.req.nr_mem_id, b.req.nr_mem_id);
        assert_ne!(a.req.nr_mem_id, c.req.nr_mem_id);
        assert_ne!(a.req.nr_mem_id, 0);
        assert_eq!(a.req.nr_memsize, b.req.nr_memsize);
        assert_eq!(a.map.base(), b.map.base(), "one region per parent");
    }

    #[test]
    fn open_close_cycles_do_not_exhaust_the_region() {
        // Keeps the region alive, so every cycle reuses its space.
        let keep = open("cyc{keep");
        let mut offsets = HashSet::new();
        for i in 0..10_000u32 {
            let id = i % 7;
            let m = open_with(&format!("cyc{{{id}"), |r| {
                r.nr_tx_rings = (i % 3) as u16 + 1;
                r.nr_tx_slots = 256;
            })
            .unwrap();
            let s = open(&format!("cyc}}{id}"));
            assert_eq!(m.req.nr_mem_id, keep.req.nr_mem_id);
            assert!(m.tx(0).send(b"p", 0));
            m.sync(SyncDir::Tx);
            s.sync(SyncDir::Rx);
            assert_eq!(s.rx(0).recv().unwrap().0, b"p");
            offsets.insert(m.req.nr_offset);
        }
        assert!(offsets.len() < 16, "netmap_if space is reused");
        // Whole regions come and go too.
        for i in 0..200 {
            let m = open(&format!("cyc{i}{{1"));
            let s = open(&format!("cyc{i}}}1"));
            drop((s, m));
        }
    }

    #[test]
    fn eventfd_is_readable_while_packets_are_unseen() {
        let m = open_slots("efd{1", 8);
        let s = open("efd}1");
        assert!(!s.readable_now());
        assert!(m.tx(0).send(b"x", 0));
        assert!(!s.readable_now(), "nothing before the txsync");
        m.sync(SyncDir::Tx);
        assert!(s.readable_now(), "readable after the peer's txsync");
        assert!(!m.readable_now(), "the sender is not readable");
        s.sync(SyncDir::Rx);
        assert!(s.readable_now(), "cur short of tail: still unseen");
        assert!(s.rx(0).recv().is_some());
        s.sync(SyncDir::Rx);
        assert!(!s.readable_now(), "drained once everything was seen");
        // A slave that binds a ring with queued packets starts readable.
        assert!(m.tx(0).send(b"y", 0));
        m.sync(SyncDir::Tx);
        drop(s);
        let s = open("efd}1");
        assert!(s.readable_now());
        assert_eq!(s.fd.poll(libc::POLLIN, ms(0)).unwrap(), libc::POLLIN);
        assert_eq!(s.rx(0).recv().unwrap().0, b"y");
    }

    #[test]
    fn eventfd_gives_writable_edges() {
        let m = open_slots("edge{1", 4);
        let s = open("edge}1");
        let ep = Epoll::new(m.fd.as_fd());
        let wait = || ep.wait(0);
        assert_eq!(wait(), libc::EPOLLOUT as u32, "initially writable");
        assert_eq!(wait(), 0, "edge-triggered");
        // Fill the master's ring: no new edge.
        while m.tx(0).send(b"z", 0) {}
        m.sync(SyncDir::Tx);
        assert_eq!(wait(), 0);
        // The slave releases: the master gets a writable edge, not readable.
        s.sync(SyncDir::Rx);
        while s.rx(0).recv().is_some() {}
        s.sync(SyncDir::Rx);
        assert_eq!(wait(), libc::EPOLLOUT as u32);
        assert!(!m.readable_now());
        // With packets waiting for the master, the edge keeps it readable.
        assert!(s.tx(0).send(b"back", 0));
        s.sync(SyncDir::Tx);
        assert_ne!(wait() & libc::EPOLLIN as u32, 0);
        m.sync(SyncDir::Tx);
        while m.tx(0).send(b"z", 0) {}
        m.sync(SyncDir::Tx);
        s.sync(SyncDir::Rx);
        while s.rx(0).recv().is_some() {}
        s.sync(SyncDir::Rx);
        assert_ne!(wait() & libc::EPOLLOUT as u32, 0);
        assert!(m.readable_now(), "still holds an unseen packet");
    }

    #[test]
    fn poll_reports_rings_and_times_out() {
        let m = open_slots("poll{1", 4);
        let s = open("poll}1");
        let both = libc::POLLIN | libc::POLLOUT;
        assert_eq!(m.fd.poll(both, ms(0)).unwrap(), libc::POLLOUT);
        let t0 = Instant::now();
        assert_eq!(s.fd.poll(libc::POLLIN, ms(50)).unwrap(), 0);
        assert!(t0.elapsed() >= Duration::from_millis(45));
        // poll's txsync sends what is pending (no NR_NO_TX_POLL).
        assert!(m.tx(0).send(b"q", 0));
        assert_eq!(m.fd.poll(libc::POLLIN, ms(0)).unwrap(), 0);
        assert_eq!(s.fd.poll(both, ms(0)).unwrap(), both);
        // A full ring is not writable.
        while m.tx(0).send(b"q", 0) {}
        assert_eq!(m.fd.poll(libc::POLLOUT, ms(10)).unwrap(), 0);
    }

    #[test]
    fn no_tx_poll_leaves_tx_rings_alone() {
        let m = open_with("ntp{1", |r| r.nr_flags = NR_NO_TX_POLL).unwrap();
        let s = open("ntp}1");
        assert!(m.tx(0).send(b"held", 0));
        assert_eq!(m.fd.poll(libc::POLLIN, ms(0)).unwrap(), 0);
        assert_eq!(s.fd.poll(libc::POLLIN, ms(0)).unwrap(), 0, "not sent by poll");
        assert_eq!(m.fd.poll(libc::POLLOUT, ms(0)).unwrap(), libc::POLLOUT);
        assert_eq!(s.fd.poll(libc::POLLIN, ms(0)).unwrap(), libc::POLLIN);
    }

    #[test]
    fn poll_wakes_when_the_peer_sends_from_another_thread() {
        let m = open_slots("wake{1", 8);
        let s = open("wake}1");
        let sent = Arc::new(AtomicBool::new(false));
        let waiter = {
            let sent = Arc::clone(&sent);
            thread::spawn(move || {
                let ev = s.fd.poll(libc::POLLIN, Deadline::after(None)).unwrap();
                // The poll slept until the packet was sent (and its sender
                // set the flag before sending): it did not return early.
                (ev, sent.load(Ordering::SeqCst), s)
            })
        };
        thread::sleep(Duration::from_millis(50));
        sent.store(true, Ordering::SeqCst);
        assert!(m.tx(0).send(b"wake", 0));
        m.sync(SyncDir::Tx);
        let (ev, after_send, s) = waiter.join().unwrap();
        assert_eq!(ev, libc::POLLIN);
        assert!(after_send, "poll returned before the peer sent");
        assert_eq!(s.rx(0).recv().unwrap().0, b"wake");
    }

    #[test]
    fn two_threads_stream_through_a_small_ring() {
        const N: u32 = 100_000;
        let m = open_slots("stream{1", 16);
        let s = open("stream}1");
        let rxer = thread::spawn(move || {
            let mut got = 0u32;
            while got < N {
                assert_ne!(s.fd.poll(libc::POLLIN, ms(5000)).unwrap(), 0, "stalled at {got}");
                while let Some((data, _)) = s.rx(0).recv() {
                    assert_eq!(data, got.to_le_bytes());
                    got += 1;
                }
            }
            s.sync(SyncDir::Rx);
        });
        let mut sent = 0u32;
        while sent < N {
            assert_ne!(
                m.fd.poll(libc::POLLOUT, ms(5000)).unwrap(),
                0,
                "stalled at {sent}"
            );
            while sent < N && m.tx(0).send(&sent.to_le_bytes(), 0) {
                sent += 1;
            }
            m.sync(SyncDir::Tx);
        }
        rxer.join().unwrap();
    }

    /// An edge-triggered epoll set on one fd, as mio makes.
    struct Epoll(OwnedFd);

    impl Epoll {
        fn new(fd: BorrowedFd<'_>) -> Epoll {
            // SAFETY: epoll_create1 takes no pointers.
            let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            assert!(ep >= 0);
            // SAFETY: `ep` was just opened and is owned by no one else.
            let ep = unsafe { OwnedFd::from_raw_fd(ep) };
            let mut ev = libc::epoll_event {
                events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLET) as u32,
                u64: 0,
            };
            let (e, f) = (ep.as_raw_fd(), fd.as_raw_fd());
            // SAFETY: valid epoll fd, target fd and event.
            let rc = unsafe { libc::epoll_ctl(e, libc::EPOLL_CTL_ADD, f, &mut ev) };
            assert_eq!(rc, 0);
            Epoll(ep)
        }

        /// Waits until an event in `want` is reported (others, such as the
        /// writable edge a drain gives, are skipped as mio users skip them);
        /// false after 5 s without one.
        fn wait_for(&self, want: u32) -> bool {
            let deadline = Instant::now() + Duration::from_secs(5);
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                if self.wait(left.as_millis() as i32 + 1) & want != 0 {
                    return true;
                }
            }
            false
        }

        /// The events of one wait, 0 on timeout.
        fn wait(&self, timeout_ms: i32) -> u32 {
            let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
            // SAFETY: `out` has room for 4 events.
            let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), out.as_mut_ptr(), 4, timeout_ms) };
            assert!(n >= 0, "{}", io::Error::last_os_error());
            out[..n as usize].iter().fold(0, |a, e| a | e.events)
        }
    }

    #[test]
    fn edge_triggered_loops_never_stall() {
        const N: u32 = 50_000;
        let m = open_slots("etl{1", 8);
        let s = open("etl}1");
        let rxer = thread::spawn(move || {
            let ep = Epoll::new(s.fd.as_fd());
            let mut got = 0u32;
            loop {
                // Read until the ring is empty after a sync, then wait.
                s.sync(SyncDir::Rx);
                let mut any = false;
                while let Some((data, _)) = s.rx(0).recv() {
                    assert_eq!(data, got.to_le_bytes());
                    got += 1;
                    any = true;
                }
                if got == N {
                    s.sync(SyncDir::Rx);
                    return;
                }
                if !any {
                    assert!(ep.wait_for(libc::EPOLLIN as u32), "no readable edge at {got}");
                }
            }
        });
        let ep = Epoll::new(m.fd.as_fd());
        let tx = m.tx(0);
        let mut sent = 0u32;
        while sent < N {
            while sent < N && tx.send(&sent.to_le_bytes(), 0) {
                sent += 1;
            }
            m.sync(SyncDir::Tx);
            if tx.space() == 0 {
                assert!(ep.wait_for(libc::EPOLLOUT as u32), "no writable edge at {sent}");
            }
        }
        rxer.join().unwrap();
    }
}
