//! One parent's shared memory: the mapping and its three first-fit pools.

use std::fmt;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::BUF_SIZE;
use crate::backend::sys::{page_size, OwnedMap};
use crate::backend::{errno, lock};
use crate::ffi::nmreq_pools_info;

/// Buffers 0 and 1 are never handed out, as in netmap.
const RESERVED_BUFS: usize = 2;
/// Allocation granularity of the `netmap_if` pool.
const IF_UNIT: usize = 64;
/// Region sizes tried in turn: the address space is only reserved
/// (`MAP_NORESERVE`), pages are populated on first touch. 8 GiB holds about
/// 900 pipes of the default shape (one ring pair of 1024 slots each way), or
/// one of the largest shape (64 ring pairs of 16384 slots) beside many small
/// ones; when memory runs out, REGISTER fails with `ENOMEM`.
const REGION_SIZES: [u64; 4] = [8 << 30, 1 << 30, 256 << 20, 64 << 20];

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
pub(super) struct Region {
    /// `_map`'s first byte.
    pub(super) base: NonNull<u8>,
    /// `_map`'s length.
    pub(super) len: usize,
    pub(super) mem_id: u16,
    /// Offset of buffer 0.
    pub(super) bufs_off: usize,
    pools: Mutex<Pools>,
    /// Whether a buffer has been seen in another pipe's rings than the one
    /// it was allocated to (a zero-copy forward between pipes of this
    /// region): from then on a closed pipe's buffers may still sit in the
    /// rings of live ones, so none is handed out again, or discarded, until
    /// the region itself goes.
    mixed: AtomicBool,
    /// The mapping, unmapped when the region drops: no pipe and no
    /// `Mapping` refer to it any more then (both hold an `Arc<Region>`).
    _map: OwnedMap,
}

// SAFETY: `base` names a private anonymous mapping owned by this value and
// unmapped only when it drops; the memory is shared, by design, between the
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
    pub(super) fn new(mem_id: u16) -> io::Result<Region> {
        let mut err = errno(libc::ENOMEM);
        for len in REGION_SIZES.iter().filter_map(|&s| usize::try_from(s).ok()) {
            let map = match OwnedMap::new(len, libc::MAP_PRIVATE | libc::MAP_NORESERVE, None) {
                Ok(map) => map,
                Err(e) => {
                    err = e;
                    continue;
                }
            };
            // The pools: 1/1024 of the region for netmap_if objects, up to
            // 1/16 for rings, the rest for buffers.
            let rings_off = len / 1024;
            let bufs_off = len / 16;
            let nbufs = ((len - bufs_off) / BUF_SIZE).min(u32::MAX as usize);
            return Ok(Region {
                base: map.base(),
                len,
                mem_id,
                bufs_off,
                pools: Mutex::new(Pools {
                    ifs: Extents::new(0, rings_off),
                    rings: Extents::new(rings_off, bufs_off - rings_off),
                    bufs: Extents::new(RESERVED_BUFS, nbufs - RESERVED_BUFS),
                }),
                mixed: AtomicBool::new(false),
                _map: map,
            });
        }
        Err(err)
    }

    /// The region's layout, as POOLS_INFO_GET answers it: the `netmap_if`
    /// pool at 0 in `IF_UNIT` objects, the ring pool in `ring_unit`
    /// objects (rings take whole multiples of it, not one object each as
    /// in the module), the buffer pool of `BUF_SIZE` buffers, the
    /// reserved ones included as in the module's count.
    pub(super) fn pools(&self, ring_unit: usize) -> nmreq_pools_info {
        let (rings_off, bufs_off) = (self.len / 1024, self.bufs_off);
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
        let nbufs = (self.len - self.bufs_off) / BUF_SIZE;
        (RESERVED_BUFS..nbufs).contains(&idx).then(|| self.buf_at(idx))
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

    pub(super) fn alloc_if(&self, bytes: usize) -> io::Result<usize> {
        let bytes = bytes.next_multiple_of(IF_UNIT);
        lock(&self.pools)
            .ifs
            .alloc(bytes)
            .ok_or_else(|| errno(libc::ENOMEM))
    }

    pub(super) fn free_if(&self, off: usize, bytes: usize) {
        lock(&self.pools)
            .ifs
            .release(off, bytes.next_multiple_of(IF_UNIT));
    }

    /// Rings and buffers for a new pipe: `(ring bytes offset, first buffer)`.
    pub(super) fn alloc_pipe(&self, ring_bytes: usize, nbufs: usize) -> io::Result<(usize, usize)> {
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

    /// Notes that buffers have crossed between pipes (see `mixed`).
    pub(super) fn mark_mixed(&self) {
        self.mixed.store(true, Ordering::Relaxed);
    }

    /// Frees a closed pipe's rings, and its buffers unless `stray` (some of
    /// them may be elsewhere: a slot of its rings named a buffer of another
    /// pipe) or buffers have crossed between pipes of this region before.
    /// Buffers kept back stay allocated, untouched, until the region drops:
    /// handing them out again could put one buffer in two live rings.
    pub(super) fn free_pipe(&self, rings: usize, ring_bytes: usize, bufs: usize, nbufs: usize, stray: bool) {
        if stray {
            self.mark_mixed();
        }
        self.discard(rings, ring_bytes);
        lock(&self.pools).rings.release(rings, ring_bytes);
        self.release_bufs(bufs, nbufs);
    }

    /// Gives buffers `[first, first + n)` of a closed pipe or port back to
    /// the pool, emptied, unless buffers have crossed between pipes of this
    /// region (see `mixed`): then they stay allocated, untouched, until the
    /// region drops.
    fn release_bufs(&self, first: usize, n: usize) {
        if self.mixed.load(Ordering::Relaxed) {
            return;
        }
        self.discard(self.bufs_off + first * BUF_SIZE, n * BUF_SIZE);
        lock(&self.pools).bufs.release(first, n);
    }

    /// Extra buffers for a port: `n` of them (fewer if the pool has not
    /// that many in one piece, as the module grants fewer), linked into a
    /// list through their first words as the module links them. Returns
    /// the first buffer and the count (0 granted: no list).
    pub(super) fn alloc_extra(&self, n: usize) -> (usize, usize) {
        let mut n = n;
        let first = loop {
            if n == 0 {
                return (0, 0);
            }
            if let Some(first) = lock(&self.pools).bufs.alloc(n) {
                break first;
            }
            n /= 2;
        };
        for i in 0..n {
            let next = if i + 1 < n { (first + i + 1) as u32 } else { 0 };
            // SAFETY: buffer `first + i` was just allocated to the caller,
            // inside the region, 4-aligned (buffers are `BUF_SIZE` apart
            // from a page-aligned start); no one else knows of it yet.
            unsafe { self.buf_at(first + i).cast::<u32>().write(next) };
        }
        (first, n)
    }

    /// Frees a closed port's extra buffers `[first, first + n)`, given the
    /// list its `netmap_if` ended with at `head`: only if that list is
    /// exactly those buffers (none of them was swapped into a ring) and
    /// buffers have not crossed between pipes of the region (see `mixed`);
    /// else they stay allocated until the region goes.
    pub(super) fn free_extra(&self, first: usize, n: usize, head: u32) {
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
            idx = unsafe {
                std::sync::atomic::AtomicU32::from_ptr(self.buf_at(idx).cast()).load(Ordering::Relaxed)
            } as usize;
        }
        if idx != 0 || count != n {
            self.mark_mixed();
        }
        self.release_bufs(first, n);
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
