//! One parent's region: the netmap memory of its file (shm.rs), the tables
//! of its control part, and the pools, which are what the tables do not use.
//!
//! # Tables
//! Every record is a run of u32 words in the control part, read and written
//! atomically under the region's lock by whichever process syncs. Any
//! process of the user can write them, so a value read from them is checked
//! before it is used as an index, a size or an offset, and never trusted to
//! point into memory: a pipe's geometry is checked against the region when a
//! process first looks at it ([`Pipe::view`](super::pipe::Pipe)).
//!
//! - **handles**: one per registered handle of any process: its owner's
//!   process slot, its pipe, end, rings, flags, `netmap_if` and extra
//!   buffers, and whether its notification FIFO holds a byte (`armed`).
//! - **pipes**: one per pipe, loopback port, monitor or VALE port: its shape,
//!   where its rings and buffers are, its first kring.
//! - **krings**: the kernel-private state of each ring.
//! - **macs**: a VALE switch's learned addresses.
//!
//! # Pools
//! There are no free lists to corrupt or to lose in a crash: the free space
//! of each pool is what no live record uses, found by first fit when a new
//! pipe or handle asks. Buffers that may still sit in live rings after their
//! owner went (see [`H_MIXED`]) stay claimed by a *held* record until the
//! region is made afresh.

use std::collections::HashMap;
use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::shm::{self, Guard, Shm, H_END, TABLES};
use super::BUF_SIZE;
use crate::backend::{errno, lock};
use crate::ffi::nmreq_pools_info;

/// Buffers 0 and 1 are never handed out, as in netmap.
const RESERVED_BUFS: usize = 2;
/// Allocation granularity of the `netmap_if` pool.
pub(super) const IF_UNIT: usize = 64;
/// Region sizes tried in turn, largest first, down to what the directory's
/// filesystem has free (a small `/dev/shm`, as containers have, takes the
/// smallest). The file is sparse: pages are reserved as they are handed out. 8 GiB holds about 900 pipes of the
/// default shape (one ring pair of 1024 slots each way), or one of the
/// largest shape (64 ring pairs of 16384 slots) beside many small ones;
/// when memory runs out, REGISTER fails with `ENOMEM`.
pub(super) const REGION_SIZES: [usize; 8] = [
    8 << 30,
    4 << 30,
    2 << 30,
    1 << 30,
    512 << 20,
    256 << 20,
    128 << 20,
    64 << 20,
];

/// Whether buffers have crossed between pipes (a zero-copy forward or
/// monitor): from then on a closed pipe's buffers may still sit in the
/// rings of live ones, so none is handed out again until the region is made
/// afresh.
const H_MIXED: usize = 8;
/// One past the highest handle slot ever made live (handle slots are taken
/// lowest first): the scans of live handles stop there.
const H_HANDLES_HWM: usize = 9;
const _: () = assert!(H_MIXED < H_END && H_MIXED > shm::H_WAITERS && H_HANDLES_HWM < H_END);

/// Record states.
pub(super) const FREE: u32 = 0;
pub(super) const LIVE: u32 = 1;
/// Kept only for the buffers it claims.
pub(super) const HELD: u32 = 2;

/// Most registered handles per region.
pub(super) const MAX_HANDLES: u32 = 512;
/// Most pipes (and ports) per region.
pub(super) const MAX_PIPES: u32 = 256;
/// Most krings per region.
pub(super) const MAX_KRINGS: u32 = 16384;
/// Entries of a switch's address table.
pub(super) const MAX_MACS: u32 = 1024;

/// Handle record words.
pub(super) mod h {
    pub const STATE: usize = 0;
    /// Bumped at each use of the slot: names its FIFO.
    pub const GEN: usize = 1;
    pub const PROC: usize = 2;
    pub const PIPE: usize = 3;
    pub const END: usize = 4;
    pub const TX_LO: usize = 5;
    pub const TX_HI: usize = 6;
    pub const RX_LO: usize = 7;
    pub const RX_HI: usize = 8;
    pub const FLAGS: usize = 9;
    /// For a monitor: the pipe and end it watches.
    pub const WATCH: usize = 10;
    pub const WATCH_END: usize = 11;
    /// `netmap_if` offset and length, in `IF_UNIT`s.
    pub const NIFP: usize = 12;
    pub const NIFP_UNITS: usize = 13;
    pub const EXTRA_FIRST: usize = 14;
    pub const EXTRA_N: usize = 15;
    /// The handle's FIFO holds a byte.
    pub const ARMED: usize = 16;
    pub const WORDS: usize = 20;

    /// FLAGS bits.
    pub const EXCLUSIVE: u32 = 1;
    pub const TXPOLL: u32 = 2;
    pub const MON_TX: u32 = 4;
    pub const MON_RX: u32 = 8;
    pub const MON_ZERO: u32 = 16;
}

/// Pipe record words.
pub(super) mod p {
    pub const STATE: usize = 0;
    pub const GEN: usize = 1;
    pub const KIND: usize = 2;
    pub const NRINGS: usize = 3;
    pub const NSLOTS: usize = 4;
    pub const STRIDE: usize = 5;
    pub const RINGS_OFF: usize = 6;
    pub const RING_BYTES: usize = 7;
    pub const BUFS_FIRST: usize = 8;
    pub const NBUFS: usize = 9;
    pub const KRINGS: usize = 10;
    pub const NK: usize = 11;
    /// A VALE port made by a control request: it stays without users.
    pub const PERSIST: usize = 12;
    pub const NAME_LEN: usize = 13;
    pub const NAME: usize = 14;
    pub const NAME_BYTES: usize = 64;
    pub const WORDS: usize = 32;
    const _: () = assert!(NAME + NAME_BYTES / 4 <= WORDS);
}

/// Kring record words.
pub(super) mod k {
    pub const HWCUR: usize = 0;
    pub const HWTAIL: usize = 1;
    pub const PIPE_TAIL: usize = 2;
    pub const RCUR: usize = 3;
    pub const WORDS: usize = 4;
}

/// Address table words.
pub(super) mod m {
    /// Bytes 0-3 of the address.
    pub const LO: usize = 0;
    /// Bytes 4-5, and `VALID`.
    pub const HI: usize = 1;
    pub const PORT: usize = 2;
    pub const PORT_GEN: usize = 3;
    pub const WORDS: usize = 4;
    pub const VALID: u32 = 1 << 16;
}

const HANDLES: usize = TABLES;
const PIPES: usize = HANDLES + MAX_HANDLES as usize * h::WORDS;
const KRINGS: usize = PIPES + MAX_PIPES as usize * p::WORDS;
const MACS: usize = KRINGS + MAX_KRINGS as usize * k::WORDS;
const _: () = assert!((MACS + MAX_MACS as usize * m::WORDS) * 4 <= shm::CTL_SIZE);

/// A record: `words` words from word `at` of the control part.
#[derive(Clone, Copy)]
pub(super) struct Rec<'a> {
    shm: &'a Shm,
    at: usize,
}

impl<'a> Rec<'a> {
    pub(super) fn get(self, f: usize) -> u32 {
        self.shm.word(self.at + f).load(Ordering::Relaxed)
    }

    pub(super) fn set(self, f: usize, v: u32) {
        self.shm.word(self.at + f).store(v, Ordering::Relaxed);
    }

    pub(super) fn word(self, f: usize) -> &'a AtomicU32 {
        self.shm.word(self.at + f)
    }
}

/// One parent's region, attached in this process.
pub(super) struct Region {
    shm: Shm,
    /// The netmap region's first byte.
    pub(super) base: NonNull<u8>,
    /// Its length.
    pub(super) len: usize,
    /// This process's name for it (memory ids are per process).
    pub(super) mem_id: u16,
    /// Offset of buffer 0.
    pub(super) bufs_off: usize,
    /// Offset of the ring pool.
    rings_off: usize,
    /// Buffers in the region, reserved ones included.
    nbufs: usize,
    /// Descriptors of other handles' FIFOs, by handle slot: `(gen, fd)`.
    fifos: Mutex<HashMap<u32, (u32, OwnedFd)>>,
}

// SAFETY: `base` names the region mapping owned by `shm`, unmapped only when
// it drops; the memory is shared, by design, between threads and processes
// that drive the rings, and is only accessed through raw pointers and
// atomics, while process-local state is behind a mutex.
unsafe impl Send for Region {}
// SAFETY: as above: `&Region` gives the base address, immutable sizes, the
// atomically accessed control words and the mutex-protected FIFO cache.
unsafe impl Sync for Region {}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("base", &self.base)
            .field("len", &self.len)
            .field("mem_id", &self.mem_id)
            .field("shm", &self.shm)
            .finish_non_exhaustive()
    }
}

/// The first `len` of `[lo, hi)` that no range of `used` overlaps.
fn first_fit(mut used: Vec<(usize, usize)>, lo: usize, hi: usize, len: usize) -> Option<usize> {
    used.sort_unstable();
    let mut at = lo;
    for (s, l) in used {
        if s >= at.saturating_add(len) {
            break;
        }
        at = at.max(s.saturating_add(l));
    }
    (at.checked_add(len)? <= hi).then_some(at)
}

impl Region {
    /// Attaches to parent `parent`'s region, making it if no live process
    /// has it; what dead processes left in it is reclaimed.
    pub(super) fn attach(parent: &str, mem_id: u16) -> io::Result<Region> {
        if parent.is_empty() || parent.contains('/') || parent.len() > 200 {
            return Err(errno(libc::EINVAL));
        }
        let shm = Shm::attach(parent, &REGION_SIZES, has_persistent)?;
        let len = shm.region.len();
        let rings_off = len / 1024;
        let bufs_off = len / 16;
        let region = Region {
            base: shm.region.base(),
            len,
            mem_id,
            bufs_off,
            rings_off,
            nbufs: ((len - bufs_off) / BUF_SIZE).min(u32::MAX as usize),
            fifos: Mutex::new(HashMap::new()),
            shm,
        };
        Ok(region)
    }

    /// The group the region is shared with, if any.
    pub(super) fn group(&self) -> Option<libc::gid_t> {
        self.shm.group()
    }

    /// This process's slot in the region.
    pub(super) fn me(&self) -> u32 {
        self.shm.me
    }

    /// Reclaims, after attaching to a region that live processes use, what
    /// dead ones left, including what a dead process left under the
    /// process slot this one now has (it has no records yet).
    pub(super) fn reclaim_stale(self: &Arc<Self>) -> io::Result<()> {
        if !self.shm.fresh {
            let g = self.lock()?;
            self.reclaim_where(&g, |owner| owner == self.shm.me || !self.shm.alive(owner));
        }
        Ok(())
    }

    /// Takes the region's lock; after taking it over from a dead holder,
    /// reclaims what dead processes left.
    pub(super) fn lock(self: &Arc<Self>) -> io::Result<Guard<'_>> {
        let (g, stolen) = self.shm.lock()?;
        if stolen {
            self.reclaim(&g);
        }
        Ok(g)
    }

    pub(super) fn word(&self, i: usize) -> &AtomicU32 {
        self.shm.word(i)
    }

    pub(super) fn handle(&self, i: u32) -> Rec<'_> {
        assert!(i < MAX_HANDLES);
        Rec {
            shm: &self.shm,
            at: HANDLES + i as usize * h::WORDS,
        }
    }

    pub(super) fn pipe_rec(&self, i: u32) -> Rec<'_> {
        assert!(i < MAX_PIPES);
        Rec {
            shm: &self.shm,
            at: PIPES + i as usize * p::WORDS,
        }
    }

    pub(super) fn kring(&self, i: u32) -> Rec<'_> {
        assert!(i < MAX_KRINGS);
        Rec {
            shm: &self.shm,
            at: KRINGS + i as usize * k::WORDS,
        }
    }

    pub(super) fn mac(&self, i: u32) -> Rec<'_> {
        assert!(i < MAX_MACS);
        Rec {
            shm: &self.shm,
            at: MACS + i as usize * m::WORDS,
        }
    }

    /// Live handles (their slots).
    pub(super) fn live_handles(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.handles_hwm()).filter(|&i| self.handle(i).get(h::STATE) == LIVE)
    }

    /// One past the highest slot a handle may be live in (a value another
    /// process wrote is cut to the table's size).
    pub(super) fn handles_hwm(&self) -> u32 {
        self.word(H_HANDLES_HWM).load(Ordering::Relaxed).min(MAX_HANDLES)
    }

    /// Notes that handle slot `i` is in use.
    pub(super) fn note_handle(&self, i: u32) {
        self.word(H_HANDLES_HWM).fetch_max(i + 1, Ordering::Relaxed);
    }

    /// Live pipes (their slots).
    pub(super) fn live_pipes(&self) -> impl Iterator<Item = u32> + '_ {
        (0..MAX_PIPES).filter(|&i| self.pipe_rec(i).get(p::STATE) == LIVE)
    }

    /// The region's layout, as POOLS_INFO_GET answers it: the `netmap_if`
    /// pool at 0 in `IF_UNIT` objects, the ring pool in `ring_unit`
    /// objects (rings take whole multiples of it, not one object each as
    /// in the module), the buffer pool of `BUF_SIZE` buffers, the
    /// reserved ones included as in the module's count.
    pub(super) fn pools(&self, ring_unit: usize) -> nmreq_pools_info {
        let (rings_off, bufs_off) = (self.rings_off, self.bufs_off);
        let count = |bytes: usize, unit: usize| u32::try_from(bytes / unit).unwrap_or(u32::MAX);
        nmreq_pools_info {
            nr_memsize: self.len as u64,
            nr_mem_id: self.mem_id,
            nr_if_pool_offset: 0,
            nr_if_pool_objtotal: count(rings_off, IF_UNIT),
            nr_if_pool_objsize: IF_UNIT as u32,
            nr_ring_pool_offset: rings_off as u64,
            nr_ring_pool_objtotal: count(bufs_off - rings_off, ring_unit),
            nr_ring_pool_objsize: ring_unit as u32,
            nr_buf_pool_offset: bufs_off as u64,
            nr_buf_pool_objtotal: count(self.len - bufs_off, BUF_SIZE),
            nr_buf_pool_objsize: BUF_SIZE as u32,
            ..Default::default()
        }
    }

    /// Buffer `idx`, if the region has it (not a reserved one).
    pub(super) fn buf(&self, idx: u32) -> Option<*mut u8> {
        let idx = idx as usize;
        (RESERVED_BUFS..self.nbufs)
            .contains(&idx)
            .then(|| self.buf_at(idx))
    }

    /// The address of buffer `idx`, which the caller knows the region has.
    fn buf_at(&self, idx: usize) -> *mut u8 {
        self.at(self.bufs_off + idx * BUF_SIZE)
    }

    /// The address `off` bytes into the region.
    pub(super) fn at(&self, off: usize) -> *mut u8 {
        debug_assert!(off <= self.len);
        self.base.as_ptr().wrapping_add(off)
    }

    /// Whether byte range `[off, off + len)` lies in the ring pool.
    pub(super) fn in_ring_pool(&self, off: usize, len: usize) -> bool {
        off >= self.rings_off && off.checked_add(len).is_some_and(|e| e <= self.bufs_off)
    }

    /// Whether byte range `[off, off + len)` lies in the `netmap_if` pool,
    /// `IF_UNIT` aligned.
    pub(super) fn in_if_pool(&self, off: usize, len: usize) -> bool {
        off.is_multiple_of(IF_UNIT) && off.checked_add(len).is_some_and(|e| e <= self.rings_off)
    }

    /// Whether buffers `[first, first + n)` lie in the buffer pool.
    pub(super) fn in_buf_pool(&self, first: usize, n: usize) -> bool {
        first >= RESERVED_BUFS && first.checked_add(n).is_some_and(|e| e <= self.nbufs)
    }

    /// A `netmap_if` of `bytes` bytes: its offset.
    pub(super) fn alloc_if(&self, _g: &Guard<'_>, bytes: usize) -> io::Result<usize> {
        let len = bytes.next_multiple_of(IF_UNIT);
        let used = self
            .live_handles()
            .map(|i| {
                let r = self.handle(i);
                (
                    r.get(h::NIFP) as usize * IF_UNIT,
                    r.get(h::NIFP_UNITS) as usize * IF_UNIT,
                )
            })
            .collect();
        let off = first_fit(used, 0, self.rings_off, len).ok_or_else(|| errno(libc::ENOMEM))?;
        self.shm.reserve(off, len)?;
        Ok(off)
    }

    /// Buffer ranges that records claim.
    fn used_bufs(&self) -> Vec<(usize, usize)> {
        let pipes = (0..MAX_PIPES)
            .map(|i| self.pipe_rec(i))
            .filter(|r| r.get(p::STATE) != FREE);
        let pipes = pipes.map(|r| (r.get(p::BUFS_FIRST) as usize, r.get(p::NBUFS) as usize));
        let handles = (0..MAX_HANDLES)
            .map(|i| self.handle(i))
            .filter(|r| r.get(h::STATE) != FREE);
        let handles = handles.map(|r| (r.get(h::EXTRA_FIRST) as usize, r.get(h::EXTRA_N) as usize));
        pipes.chain(handles).filter(|&(_, n)| n > 0).collect()
    }

    /// Rings, buffers and krings for a new pipe: `(ring bytes offset, first
    /// buffer, first kring)`, reserved in the file.
    pub(super) fn alloc_pipe(
        &self,
        _g: &Guard<'_>,
        ring_bytes: usize,
        nbufs: usize,
        nk: usize,
    ) -> io::Result<(usize, usize, u32)> {
        let live: Vec<Rec<'_>> = self.live_pipes().map(|i| self.pipe_rec(i)).collect();
        let rings_used = live
            .iter()
            .map(|r| (r.get(p::RINGS_OFF) as usize, r.get(p::RING_BYTES) as usize))
            .collect();
        let krings_used = live
            .iter()
            .map(|r| (r.get(p::KRINGS) as usize, r.get(p::NK) as usize))
            .collect();
        let nomem = || errno(libc::ENOMEM);
        let rings = first_fit(rings_used, self.rings_off, self.bufs_off, ring_bytes).ok_or_else(nomem)?;
        let krings = first_fit(krings_used, 0, MAX_KRINGS as usize, nk).ok_or_else(nomem)?;
        let bufs = first_fit(self.used_bufs(), RESERVED_BUFS, self.nbufs, nbufs).ok_or_else(nomem)?;
        self.shm.reserve(rings, ring_bytes)?;
        self.shm
            .reserve(self.bufs_off + bufs * BUF_SIZE, nbufs * BUF_SIZE)?;
        Ok((rings, bufs, krings as u32))
    }

    /// Notes that buffers have crossed between pipes (see [`H_MIXED`]).
    pub(super) fn mark_mixed(&self) {
        self.word(H_MIXED).store(1, Ordering::Relaxed);
    }

    /// Whether buffers have crossed between pipes.
    pub(super) fn mixed(&self) -> bool {
        self.word(H_MIXED).load(Ordering::Relaxed) != 0
    }

    /// Gives the pages of a closed pipe's rings back.
    pub(super) fn free_rings(&self, off: usize, len: usize) {
        self.shm.release(off, len);
    }

    /// Gives the pages of buffers `[first, first + n)` back: the caller
    /// stops claiming them.
    pub(super) fn free_bufs(&self, first: usize, n: usize) {
        self.shm.release(self.bufs_off + first * BUF_SIZE, n * BUF_SIZE);
    }

    /// Extra buffers for a port: `n` of them (fewer if the pool has not
    /// that many in one piece, as the module grants fewer), linked into a
    /// list through their first words as the module links them. Returns
    /// the first buffer and the count (0 granted: no list).
    pub(super) fn alloc_extra(&self, _g: &Guard<'_>, n: usize) -> (usize, usize) {
        let used = self.used_bufs();
        let mut n = n;
        let first = loop {
            if n == 0 {
                return (0, 0);
            }
            if let Some(first) = first_fit(used.clone(), RESERVED_BUFS, self.nbufs, n) {
                if self
                    .shm
                    .reserve(self.bufs_off + first * BUF_SIZE, n * BUF_SIZE)
                    .is_ok()
                {
                    break first;
                }
            }
            n /= 2;
        };
        for i in 0..n {
            let next = if i + 1 < n { (first + i + 1) as u32 } else { 0 };
            // SAFETY: buffer `first + i` is in the region and was just
            // reserved for the caller, 4-aligned (buffers are `BUF_SIZE`
            // apart from a page-aligned start); it is written atomically,
            // as any word others may see.
            unsafe { AtomicU32::from_ptr(self.buf_at(first + i).cast()).store(next, Ordering::Relaxed) };
        }
        (first, n)
    }

    /// Whether a closed port's extra buffers `[first, first + n)` may go
    /// back to the pool, given the list its `netmap_if` ended with at
    /// `head`: only if that list is exactly those buffers (none of them was
    /// swapped into a ring) and buffers have not crossed between pipes.
    pub(super) fn extra_intact(&self, first: usize, n: usize, head: u32) -> bool {
        let mut seen = vec![false; n];
        let mut idx = head as usize;
        let mut count = 0;
        while idx != 0 && count <= n {
            let Some(k) = idx.checked_sub(first).filter(|&k| k < n && !seen[k]) else {
                break;
            };
            seen[k] = true;
            count += 1;
            // SAFETY: buffer `idx` is one of the port's extra buffers, inside
            // the region and 4-aligned; it is read as a word another holder
            // of the region might write, atomically.
            idx = unsafe { AtomicU32::from_ptr(self.buf_at(idx).cast()).load(Ordering::Relaxed) } as usize;
        }
        if idx != 0 || count != n {
            self.mark_mixed();
        }
        !self.mixed()
    }

    /// Reclaims what dead processes left: their handles close, and pipes
    /// that no live handle uses go.
    pub(super) fn reclaim(self: &Arc<Self>, g: &Guard<'_>) {
        self.reclaim_where(g, |owner| !self.shm.alive(owner));
    }

    /// Closes the handles whose owner `dead` says is gone, then frees the
    /// pipes no live handle uses.
    fn reclaim_where(self: &Arc<Self>, g: &Guard<'_>, dead: impl Fn(u32) -> bool) {
        let mut known = HashMap::new();
        for i in self.live_handles().collect::<Vec<_>>() {
            let owner = self.handle(i).get(h::PROC);
            let gone = *known.entry(owner).or_insert_with(|| dead(owner));
            if gone {
                super::fd::close_record(self, g, i);
            }
        }
        for i in self.live_pipes().collect::<Vec<_>>() {
            super::pipe::free_if_unused(self, g, i);
        }
    }

    /// The path of handle `h`'s FIFO at generation `gen`.
    pub(super) fn fifo_path(&self, h: u32, gen: u32) -> CString {
        self.shm.fifo_path(h, gen)
    }

    /// Runs `f` on handle `hs`'s FIFO, opened (once per generation) for
    /// reading and writing; nothing if it cannot be opened (its owner is
    /// gone).
    pub(super) fn with_fifo(&self, hs: u32, f: impl FnOnce(&OwnedFd)) {
        let gen = self.handle(hs).get(h::GEN);
        let mut fifos = lock(&self.fifos);
        if fifos.get(&hs).is_none_or(|(g, _)| *g != gen) {
            fifos.remove(&hs);
            let path = self.fifo_path(hs, gen);
            // SAFETY: `path` is a C string; O_NONBLOCK keeps the open of a
            // FIFO from waiting, and the result is a new descriptor.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) };
            if fd < 0 {
                return;
            }
            // SAFETY: `fd` was just opened and is owned by no one else.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            if !is_fifo(&fd) {
                return;
            }
            fifos.insert(hs, (gen, fd));
        }
        if let Some((_, fd)) = fifos.get(&hs) {
            f(fd);
        }
    }
}

/// Whether the control words `w` hold a live persistent port.
fn has_persistent(w: &dyn Fn(usize) -> u32) -> bool {
    (0..MAX_PIPES as usize).any(|i| {
        let at = PIPES + i * p::WORDS;
        w(at + p::STATE) == LIVE && w(at + p::PERSIST) != 0
    })
}

impl Drop for Region {
    fn drop(&mut self) {
        if has_persistent(&|i| self.shm.word(i).load(Ordering::Relaxed)) {
            self.shm.keep_file();
        }
    }
}

/// Whether `fd` is a FIFO (a file of another kind at a FIFO's path is not
/// written to).
fn is_fifo(fd: &OwnedFd) -> bool {
    // SAFETY: `st` is writable; fstat only fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above, on an fd we own.
    unsafe { libc::fstat(fd.as_raw_fd(), &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFIFO }
}

#[cfg(test)]
mod tests {
    use super::first_fit;

    #[test]
    fn first_fit_takes_the_lowest_gap_that_is_large_enough() {
        assert_eq!(first_fit(vec![], 2, 10, 8), Some(2));
        assert_eq!(first_fit(vec![], 2, 10, 9), None);
        assert_eq!(first_fit(vec![(4, 2), (2, 1)], 2, 20, 1), Some(3));
        assert_eq!(first_fit(vec![(4, 2), (2, 1)], 2, 20, 2), Some(6));
        assert_eq!(first_fit(vec![(2, 3), (3, 4)], 2, 20, 1), Some(7));
        assert_eq!(first_fit(vec![(0, usize::MAX)], 0, 20, 1), None);
    }
}
