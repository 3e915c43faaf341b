//! Pipes, loopback ports, monitors and VALE ports: their rings in the
//! region, the kernel-private state of each ring, and the syncs that move
//! slots between ring pairs.

use std::fmt;
use std::io;
use std::ptr::{self, NonNull};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::notify;
use super::region::{h, k as kw, p, Region, FREE, HELD, LIVE, MAX_KRINGS, MAX_PIPES};
use super::registry::End;
use super::shm::{futex_wait, futex_wake, Guard, H_GEN, H_WAITERS};
use super::{BUF_SIZE, MAX_RINGS, MAX_SLOTS, MIN_SLOTS};
use crate::backend::kring::Slot;
use crate::backend::kring::{SharedRing, RING_HDR, SLOT_SIZE};
use crate::backend::{errno, nm_prev as prev, within};
use crate::ffi::nm_next as next;
use crate::ffi::{netmap_ring, netmap_slot, NS_BUF_CHANGED, NS_MOREFRAG, NS_TXMON};

/// Allocation granularity of the ring pool (a `netmap_ring` is 128-aligned).
pub(super) const RING_UNIT: usize = 128;

const _: () = assert!(std::mem::align_of::<netmap_ring>() <= RING_UNIT);

/// Ring direction, numbered as `netmap_ring.dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
    Tx = 0,
    Rx = 1,
}

/// What a pipe record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A master/slave pair: `4 * nrings` rings; master TX ring `i` feeds
    /// slave RX ring `i`, and the other way round.
    Pipe = 0,
    /// A lone end whose TX ring `i` feeds its own RX ring `i`, a stand-in for
    /// an interface looped back by cable.
    Loopback = 1,
    /// A monitor's port: shaped as a loopback port, fed by the monitored
    /// rings through its TX rings, which its user never binds.
    Monitor = 2,
    /// A port of a VALE switch (the region's): its TX rings feed the
    /// switch, which fills the RX rings of the other ports.
    Vale = 3,
}

impl Kind {
    fn from_u32(v: u32) -> Option<Kind> {
        [Kind::Pipe, Kind::Loopback, Kind::Monitor, Kind::Vale]
            .into_iter()
            .find(|k| *k as u32 == v)
    }

    fn ends(self) -> usize {
        if self == Kind::Pipe {
            2
        } else {
            1
        }
    }

    /// Buffers per ring pair of one end: a pair shares its TX ring's
    /// buffers, except on a VALE port, whose RX rings have their own.
    fn bufs_per_pair(self) -> usize {
        if self == Kind::Vale {
            2
        } else {
            1
        }
    }
}

/// The kernel-private state of one ring (a kring).
#[derive(Debug, Clone, Copy)]
pub(super) struct Kring {
    /// First slot the kernel has not yet processed (TX) or that the user
    /// still holds (RX).
    pub(super) hwcur: u32,
    /// The `tail` the user was last given.
    pub(super) hwtail: u32,
    /// The `hwtail` the peer (or switch) has made available, taken at the
    /// next sync.
    pub(super) pipe_tail: u32,
    /// The user's `cur` at the last sync.
    pub(super) rcur: u32,
}

/// One process's view of a pipe record: its geometry, read once and
/// checked against the region, so that nothing another process writes to
/// the record later can move a ring access out of the region.
pub(super) struct Pipe {
    pub(super) region: Arc<Region>,
    pub(super) slot: u32,
    pub(super) kind: Kind,
    ends: usize,
    pub(super) nrings: u32,
    pub(super) nslots: u32,
    /// Bytes from one ring to the next.
    ring_stride: usize,
    /// Region offset of the first ring.
    rings_off: usize,
    /// First of this pipe's buffers, and how many.
    bufs_first: usize,
    nbufs: usize,
    /// First kring record.
    krings: u32,
}

impl fmt::Debug for Pipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipe")
            .field("slot", &self.slot)
            .field("kind", &self.kind)
            .field("mem_id", &self.region.mem_id)
            .field("nrings", &self.nrings)
            .field("nslots", &self.nslots)
            .finish_non_exhaustive()
    }
}

/// The ring stride of a pipe of `nslots` slots per ring.
fn stride(nslots: u32) -> usize {
    (RING_HDR + nslots as usize * SLOT_SIZE).next_multiple_of(RING_UNIT)
}

/// Whether record `r` has the name `name`.
fn named(r: super::region::Rec<'_>, name: &str) -> bool {
    let len = r.get(p::NAME_LEN) as usize;
    len == name.len()
        && len <= p::NAME_BYTES
        && (0..len.div_ceil(4)).all(|w| r.get(p::NAME + w) == name_word(name, w))
}

/// Word `w` of `name`'s bytes, zero padded.
fn name_word(name: &str, w: usize) -> u32 {
    let mut b = [0u8; 4];
    for (i, c) in name.bytes().skip(4 * w).take(4).enumerate() {
        b[i] = c;
    }
    u32::from_le_bytes(b)
}

/// The live pipe record named `name` of kind `kind`, if any.
pub(super) fn find(region: &Region, _g: &Guard<'_>, name: &str, kind: Kind) -> Option<u32> {
    region.live_pipes().find(|&i| {
        let r = region.pipe_rec(i);
        r.get(p::KIND) == kind as u32 && named(r, name)
    })
}

/// Frees pipe record `slot` if it is live, not persistent, and no live
/// handle uses it. Its rings go back to the pool; its buffers too, unless
/// a slot of its rings names a buffer of another pipe (then one of its own
/// may be in another pipe's rings now) or buffers have crossed between
/// pipes before: then the record stays, held, claiming them until the
/// region is made afresh, since handing them out again could put one
/// buffer in two live rings.
pub(super) fn free_if_unused(region: &Arc<Region>, g: &Guard<'_>, slot: u32) {
    let r = region.pipe_rec(slot);
    if r.get(p::STATE) != LIVE || r.get(p::PERSIST) != 0 {
        return;
    }
    let used = region
        .live_handles()
        .any(|i| region.handle(i).get(h::PIPE) == slot);
    if used {
        return;
    }
    let Some(pipe) = Pipe::view(region, g, slot) else {
        // A record that does not check out: keep its buffers.
        region.mark_mixed();
        r.set(p::STATE, HELD);
        return;
    };
    let stray = (0..pipe.nkrings()).any(|k| {
        let ring = pipe.ring(k);
        (0..pipe.nslots).any(|i| !pipe.owns(ring.load(i).buf_idx))
    });
    if stray {
        region.mark_mixed();
    }
    region.free_rings(pipe.rings_off, pipe.nkrings() * pipe.ring_stride);
    if region.mixed() {
        r.set(p::STATE, HELD);
    } else {
        r.set(p::STATE, FREE);
        region.free_bufs(pipe.bufs_first, pipe.nbufs);
    }
}

impl Pipe {
    /// Makes a pipe record named `name` (a pipe's `parent{id`, a loopback
    /// port's `parent`, a VALE port's name; monitors are nameless), with
    /// its rings and buffers, in the region.
    pub(super) fn create(
        region: &Arc<Region>,
        g: &Guard<'_>,
        name: &str,
        kind: Kind,
        nrings: u32,
        nslots: u32,
    ) -> io::Result<Pipe> {
        if name.len() > p::NAME_BYTES {
            return Err(errno(libc::ENAMETOOLONG));
        }
        let slot = (0..MAX_PIPES)
            .find(|&i| region.pipe_rec(i).get(p::STATE) == FREE)
            .ok_or_else(|| errno(libc::ENOMEM))?;
        let ring_stride = stride(nslots);
        let ends = kind.ends();
        let nk = 2 * ends * nrings as usize;
        let nbufs = ends * kind.bufs_per_pair() * nrings as usize * nslots as usize;
        let (rings_off, bufs_first, krings) = region.alloc_pipe(g, nk * ring_stride, nbufs, nk)?;
        let r = region.pipe_rec(slot);
        for (f, v) in [
            (p::GEN, r.get(p::GEN).wrapping_add(1)),
            (p::KIND, kind as u32),
            (p::NRINGS, nrings),
            (p::NSLOTS, nslots),
            (p::STRIDE, ring_stride as u32),
            (p::RINGS_OFF, rings_off as u32),
            (p::RING_BYTES, (nk * ring_stride) as u32),
            (p::BUFS_FIRST, bufs_first as u32),
            (p::NBUFS, nbufs as u32),
            (p::KRINGS, krings),
            (p::NK, nk as u32),
            (p::PERSIST, 0),
            (p::NAME_LEN, name.len() as u32),
        ] {
            r.set(f, v);
        }
        for w in 0..p::NAME_BYTES / 4 {
            r.set(p::NAME + w, name_word(name, w));
        }
        // The record is not live yet, so its pool space counts as free
        // again if this fails (another process rewrote it meanwhile).
        let pipe = Pipe::from_record(region, slot).ok_or_else(|| errno(libc::EIO))?;
        for k in 0..nk {
            let tail = if pipe.decompose(k).1 == Dir::Tx {
                nslots - 1
            } else {
                0
            };
            pipe.set_kr(
                k,
                Kring {
                    hwcur: 0,
                    hwtail: tail,
                    pipe_tail: tail,
                    rcur: 0,
                },
            );
            pipe.init_ring(k);
        }
        r.set(p::STATE, LIVE);
        Ok(pipe)
    }

    /// This process's view of live pipe record `slot`, if its geometry
    /// checks out: a shape in range, rings in the ring pool, buffers in the
    /// buffer pool, krings in their table.
    pub(super) fn view(region: &Arc<Region>, _g: &Guard<'_>, slot: u32) -> Option<Pipe> {
        if slot >= MAX_PIPES || region.pipe_rec(slot).get(p::STATE) != LIVE {
            return None;
        }
        Pipe::from_record(region, slot)
    }

    /// [`view`](Self::view) of record `slot` (below `MAX_PIPES`), live or
    /// not.
    fn from_record(region: &Arc<Region>, slot: u32) -> Option<Pipe> {
        let r = region.pipe_rec(slot);
        let kind = Kind::from_u32(r.get(p::KIND))?;
        let (nrings, nslots) = (r.get(p::NRINGS), r.get(p::NSLOTS));
        if !(1..=MAX_RINGS).contains(&nrings) || !(MIN_SLOTS..=MAX_SLOTS).contains(&nslots) {
            return None;
        }
        let ends = kind.ends();
        let nk = 2 * ends * nrings as usize;
        let ring_stride = stride(nslots);
        let rings_off = r.get(p::RINGS_OFF) as usize;
        let bufs_first = r.get(p::BUFS_FIRST) as usize;
        let nbufs = ends * kind.bufs_per_pair() * nrings as usize * nslots as usize;
        let krings = r.get(p::KRINGS);
        let ok = r.get(p::STRIDE) as usize == ring_stride
            && r.get(p::NBUFS) as usize == nbufs
            && r.get(p::NK) as usize == nk
            && rings_off.is_multiple_of(RING_UNIT)
            && region.in_ring_pool(rings_off, nk * ring_stride)
            && region.in_buf_pool(bufs_first, nbufs)
            && (krings as usize)
                .checked_add(nk)
                .is_some_and(|e| e <= MAX_KRINGS as usize);
        ok.then(|| Pipe {
            region: Arc::clone(region),
            slot,
            kind,
            ends,
            nrings,
            nslots,
            ring_stride,
            rings_off,
            bufs_first,
            nbufs,
            krings,
        })
    }

    /// Writes ring `k`'s header and slots into its freshly allocated space.
    fn init_ring(&self, k: usize) {
        let (end, dir, id) = self.decompose(k);
        let n = self.nslots;
        let off = self.ring_off(k);
        let r = self.region.at(off).cast::<netmap_ring>();
        let first = self.first_buf(end, dir, id);
        let tail = if dir == Dir::Tx { n - 1 } else { 0 };
        // SAFETY: `[off, off + ring_stride)` was just allocated to this pipe
        // from the ring pool, inside the mapped region, 128-aligned; no user
        // has been told about it yet, so plain writes do not race with any
        // access of this process.
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

    /// The first buffer of ring `(end, dir, id)`: both rings of a pair hold
    /// the buffers of the TX ring's end, at the same positions, except on a
    /// VALE port, where every ring has its own.
    fn first_buf(&self, end: usize, dir: Dir, id: u32) -> usize {
        let n = self.nslots as usize;
        let ring = if self.kind == Kind::Vale {
            dir as usize * self.nrings as usize + id as usize
        } else {
            let tx_end = if dir == Dir::Tx { end } else { self.ends - 1 - end };
            tx_end * self.nrings as usize + id as usize
        };
        self.bufs_first + ring * n
    }

    /// `(end, dir, ring id)` of kring `k`.
    pub(super) fn decompose(&self, k: usize) -> (usize, Dir, u32) {
        let q = k / self.nrings as usize;
        let dir = if q.is_multiple_of(2) { Dir::Tx } else { Dir::Rx };
        (q / 2, dir, (k % self.nrings as usize) as u32)
    }

    pub(super) fn kidx(&self, end: End, dir: Dir, id: u32) -> usize {
        (end as usize * 2 + dir as usize) * self.nrings as usize + id as usize
    }

    /// The kring paired with `k`: the other direction of the other end (of
    /// the same end, for a loopback port), same ring id.
    fn peer(&self, k: usize) -> usize {
        let q = k / self.nrings as usize;
        (2 * self.ends - 1 - q) * self.nrings as usize + k % self.nrings as usize
    }

    /// Whether buffer `idx` is one of this pipe's.
    pub(super) fn owns(&self, idx: u32) -> bool {
        (idx as usize).wrapping_sub(self.bufs_first) < self.nbufs
    }

    pub(super) fn nkrings(&self) -> usize {
        2 * self.ends * self.nrings as usize
    }

    pub(super) fn ring_off(&self, k: usize) -> usize {
        self.rings_off + k * self.ring_stride
    }

    pub(super) fn ring(&self, k: usize) -> SharedRing<'_> {
        debug_assert!(k < self.nkrings());
        let ring = NonNull::new(self.region.at(self.ring_off(k))).expect("ring in region");
        // SAFETY: ring `k` of this pipe lies in its region (`view` checked
        // the ring range against the ring pool), `RING_UNIT` aligned, with
        // `nslots` slots; the region stays mapped while `self` (holding its
        // `Arc`) is borrowed; the pipe's code keeps slot indices below
        // `nslots`.
        unsafe { SharedRing::new(ring) }
    }

    /// Kring `k`'s state, as the table holds it (not checked).
    pub(super) fn kr(&self, k: usize) -> Kring {
        let r = self.region.kring(self.krings + k as u32);
        Kring {
            hwcur: r.get(kw::HWCUR),
            hwtail: r.get(kw::HWTAIL),
            pipe_tail: r.get(kw::PIPE_TAIL),
            rcur: r.get(kw::RCUR),
        }
    }

    pub(super) fn set_kr(&self, k: usize, s: Kring) {
        let r = self.region.kring(self.krings + k as u32);
        r.set(kw::HWCUR, s.hwcur);
        r.set(kw::HWTAIL, s.hwtail);
        r.set(kw::PIPE_TAIL, s.pipe_tail);
        r.set(kw::RCUR, s.rcur);
    }

    /// Sets only kring `k`'s `pipe_tail`.
    pub(super) fn set_pipe_tail(&self, k: usize, t: u32) {
        self.region.kring(self.krings + k as u32).set(kw::PIPE_TAIL, t);
    }

    /// Kring `k`'s state if every index in it is a slot of the ring; else
    /// (another process wrote the table) the ring is reset to empty, as a
    /// fresh ring is, and `None`.
    pub(super) fn checked_kr(&self, k: usize) -> Option<Kring> {
        let s = self.kr(k);
        let n = self.nslots;
        if s.hwcur < n && s.hwtail < n && s.pipe_tail < n && s.rcur < n {
            return Some(s);
        }
        let tail = if self.decompose(k).1 == Dir::Tx { n - 1 } else { 0 };
        let fresh = Kring {
            hwcur: 0,
            hwtail: tail,
            pipe_tail: tail,
            rcur: 0,
        };
        self.set_kr(k, fresh);
        self.ring(k).reset(0, tail);
        None
    }

    /// Whether a sync of kring `k` would change nothing: the user moved
    /// neither `head` nor `cur`, the peer (or switch) made nothing new
    /// available, and the ring and the table agree with the last sync. It
    /// reads without the lock (every word is atomic): what a peer publishes
    /// meanwhile is what it published just after this sync, and reaches the
    /// user at the next one, with its readable edge written as usual.
    pub(super) fn idle(&self, k: usize) -> bool {
        let kr = self.kr(k);
        let ring = self.ring(k);
        let (head, cur) = ring.head_cur();
        kr.hwcur < self.nslots
            && kr.hwtail < self.nslots
            && kr.rcur < self.nslots
            && head == kr.hwcur
            && cur == kr.rcur
            && kr.pipe_tail == kr.hwtail
            && ring.tail() == kr.hwtail
    }

    /// Live handles bound to kring `k`.
    pub(super) fn binders(&self, k: usize) -> impl Iterator<Item = u32> + '_ {
        let (end, dir, id) = self.decompose(k);
        let (lo, hi) = match dir {
            Dir::Tx => (h::TX_LO, h::TX_HI),
            Dir::Rx => (h::RX_LO, h::RX_HI),
        };
        let region = &*self.region;
        (0..region.handles_hwm()).filter(move |&i| {
            let r = region.handle(i);
            r.get(h::STATE) == LIVE
                && r.get(h::PIPE) == self.slot
                && r.get(h::END) as usize == end
                && (r.get(lo)..r.get(hi)).contains(&id)
        })
    }

    /// Sends `edge` to every binder of kring `k`.
    pub(super) fn notify(&self, k: usize, edge: fn(&Region, u32)) {
        for hs in self.binders(k) {
            edge(&self.region, hs);
        }
    }

    /// Tells `poll` waiters of the region that something changed.
    pub(super) fn wake(&self, _g: &Guard<'_>) {
        wake(&self.region);
    }

    /// The kernel's checks before a sync: `head` and `cur` must lie in
    /// `[hwcur, hwtail]` (for TX, `hwcur` is the last `head` and `hwtail` the
    /// last `tail` given). On failure the user's view is reset.
    pub(super) fn prologue(&self, k: usize) -> Option<(u32, Kring)> {
        let mut kr = self.checked_kr(k)?;
        let ring = self.ring(k);
        let (head, cur) = ring.head_cur();
        let n = self.nslots;
        if head < n && cur < n && within(head, kr.hwcur, kr.hwtail) && within(cur, head, kr.hwtail) {
            kr.rcur = cur;
            self.set_kr(k, kr);
            Some((head, kr))
        } else {
            ring.reset(kr.hwcur, kr.hwtail);
            kr.rcur = kr.hwcur;
            self.set_kr(k, kr);
            None
        }
    }

    /// `NIOCTXSYNC` on TX kring `k`; `false` on a prologue violation.
    pub(super) fn txsync(&self, g: &Guard<'_>, k: usize) -> bool {
        if self.kind == Kind::Vale {
            return super::switch::txsync(self, g, k);
        }
        let Some((head, kr)) = self.prologue(k) else {
            return false;
        };
        // Copy monitors see what the user hands over, before the peer does.
        self.feed_taps(g, k, (kr.hwcur, head), NS_TXMON, false);
        // Room the peer released since the last sync: its packets are
        // done with, and zero-copy monitors get their buffers.
        let freed = (next(kr.hwtail, self.nslots), next(kr.pipe_tail, self.nslots));
        self.feed_taps(g, k, freed, NS_TXMON, true);
        let ring = self.ring(k);
        let p = self.peer(k);
        let mut kr = self.kr(k);
        kr.hwtail = kr.pipe_tail % self.nslots;
        // Only whole packets reach the peer.
        let publish = self.copy_to_peer(k, kr.hwcur % self.nslots, head);
        kr.hwcur = head;
        self.set_kr(k, kr);
        ring.set_tail(kr.hwtail);
        if let Some(t) = publish {
            self.set_pipe_tail(p, t);
            self.notify(p, notify::readable);
            self.wake(g);
        }
        true
    }

    /// `NIOCRXSYNC` on RX kring `k`; `false` on a prologue violation.
    pub(super) fn rxsync(&self, g: &Guard<'_>, k: usize) -> bool {
        if self.kind == Kind::Vale {
            return super::switch::rxsync(self, g, k);
        }
        let Some((head, mut kr)) = self.prologue(k) else {
            return false;
        };
        let n = self.nslots;
        let ring = self.ring(k);
        let p = self.peer(k);
        // Packets the peer published since the last sync, which copy
        // monitors see before the user does.
        let arrived = (kr.hwtail, kr.pipe_tail);
        kr.hwtail = kr.pipe_tail;
        let released = head != kr.hwcur;
        let from = kr.hwcur;
        kr.hwcur = head;
        self.set_kr(k, kr);
        // The packets the user is done with go to zero-copy monitors before
        // their slots go back to the sender.
        self.feed_taps(g, k, (from, head), 0, true);
        // The released slots (maybe with swapped buffers) go back to the
        // sender's ring as free room.
        self.copy_to_peer(k, from, head);
        ring.stamp();
        self.feed_taps(g, k, arrived, 0, false);
        ring.set_tail(kr.hwtail);
        if released {
            self.set_pipe_tail(p, prev(head, n));
            // A writable edge only where the last txsync left the ring
            // full: a user that saw room is not waiting for more.
            let pk = self.kr(p);
            if pk.rcur == pk.hwtail {
                self.notify(p, notify::writable);
            }
            self.wake(g);
        }
        true
    }

    /// Hands the packets in slots `[from, to)` of kring `k` to its monitors
    /// of one kind (`zero`), with `txmon` added to their flags: the live
    /// handles that watch this end's ring of that direction and id.
    fn feed_taps(&self, g: &Guard<'_>, k: usize, (from, to): (u32, u32), txmon: u16, zero: bool) {
        let n = self.nslots;
        if from == to || from >= n || to >= n {
            return;
        }
        let (end, dir, id) = self.decompose(k);
        let want = match dir {
            Dir::Tx => h::MON_TX,
            Dir::Rx => h::MON_RX,
        };
        let region = &*self.region;
        let monitors: Vec<u32> = region
            .live_handles()
            .filter(|&i| {
                let r = region.handle(i);
                let flags = r.get(h::FLAGS);
                r.get(h::WATCH) == self.slot
                    && r.get(h::WATCH_END) as usize == end
                    && (flags & h::MON_ZERO != 0) == zero
                    && (zero || flags & want != 0)
                    && (r.get(h::RX_LO)..r.get(h::RX_HI)).contains(&id)
            })
            .map(|i| region.handle(i).get(h::PIPE))
            .collect();
        for m in monitors {
            if let Some(monitor) = Pipe::view(&self.region, g, m).filter(|m| m.kind == Kind::Monitor) {
                if monitor.nrings > id {
                    monitor.take(g, id, self, k, (from, to), txmon, zero);
                }
            }
        }
    }

    /// As a monitor: takes the packets in slots `[from, to)` of `src`'s
    /// kring `sk` (slots the kernel holds there) into its ring `id`, as many
    /// of the latest as there is room for, as netmap's monitors do, and
    /// makes them readable. A copy monitor copies them into its own buffers
    /// only; a zero-copy one (`zero`) takes their buffers, giving each slot
    /// a free buffer of its own in exchange (`NS_BUF_CHANGED`).
    #[allow(clippy::too_many_arguments)]
    fn take(
        &self,
        g: &Guard<'_>,
        id: u32,
        src: &Pipe,
        sk: usize,
        (from, to): (u32, u32),
        txmon: u16,
        zero: bool,
    ) {
        let t = self.kidx(End::Master, Dir::Tx, id);
        let n = self.nslots;
        let Some(mut kr) = self.checked_kr(t) else {
            return;
        };
        kr.hwtail = kr.pipe_tail;
        let room = crate::ffi::nm_space(kr.hwcur, kr.hwtail, n);
        let new = crate::ffi::nm_space(from, to, src.nslots);
        let mut j = from;
        for _ in 0..new.saturating_sub(room) {
            j = next(j, src.nslots);
        }
        let (ring, sring) = (self.ring(t), src.ring(sk));
        let start = kr.hwcur;
        let mut i = start;
        while j != to {
            let (s, d) = (sring.load(j), ring.load(i));
            let at = j;
            j = next(j, src.nslots);
            let flags = (s.flags & !(NS_TXMON | NS_BUF_CHANGED)) | txmon;
            let taken = if zero {
                self.swap_in(s, d).map(|mine| {
                    sring.store(at, mine);
                    Slot {
                        flags,
                        len: s.len.min(BUF_SIZE as u16),
                        ..s
                    }
                })
            } else {
                self.copy_in(s, d).map(|len| Slot { len, flags, ..d })
            };
            if let Some(slot) = taken {
                ring.store(i, Slot { ptr: 0, ..slot });
                i = next(i, n);
            }
        }
        let publish = self.copy_to_peer(t, start, i);
        kr.hwcur = i;
        self.set_kr(t, kr);
        ring.set_tail(kr.hwtail);
        if let Some(e) = publish {
            let pk = self.peer(t);
            self.set_pipe_tail(pk, e);
            self.notify(pk, notify::readable);
            self.wake(g);
        }
    }

    /// A zero-copy monitor's swap of source slot `s` with its free slot
    /// `d`: what `s` becomes (`d`'s buffer, flagged changed), or `None`
    /// if either names no buffer of the region. The monitor's free slots
    /// hold what its reader gave back, the monitored pipe's buffers after
    /// the first swaps; no byte is written, buffers only change hands.
    fn swap_in(&self, s: Slot, d: Slot) -> Option<Slot> {
        self.region.buf(s.buf_idx)?;
        self.region.buf(d.buf_idx)?;
        // From here on buffers of the two pipes cross (see `mixed`).
        self.region.mark_mixed();
        Some(Slot {
            buf_idx: d.buf_idx,
            flags: s.flags | NS_BUF_CHANGED,
            ..s
        })
    }

    /// A copy monitor's copy of source slot `s`'s packet into its free
    /// slot `d`'s buffer: the length copied, or `None` if `d`'s buffer is
    /// not the monitor's own (its user moved another one into the ring):
    /// never written into.
    fn copy_in(&self, s: Slot, d: Slot) -> Option<u16> {
        let dst = self.region.buf(d.buf_idx).filter(|_| self.owns(d.buf_idx));
        let Some(dst) = dst else {
            self.region.mark_mixed();
            return None;
        };
        Some(self.region.buf(s.buf_idx).map_or(0, |b| {
            let len = usize::from(s.len).min(BUF_SIZE);
            // SAFETY: both buffers lie in the region. The source slot is
            // the kernel's for the duration of this sync (handed over by
            // TX, not yet given to RX), the destination is this monitor's
            // free room, owned by the kernel; `copy` allows the two to be
            // one buffer, which only a forged slot makes.
            unsafe { ptr::copy(b, dst, len) };
            len as u16
        }))
    }

    /// Copies slots `[from, to)` of kring `k` into its peer ring at the same
    /// positions (a ring pair holds the same buffers at the same positions)
    /// and clears `NS_BUF_CHANGED` in ring `k`. Returns the position after
    /// the last slot that ends a packet (no `NS_MOREFRAG`), if any.
    fn copy_to_peer(&self, k: usize, from: u32, to: u32) -> Option<u32> {
        let (ring, peer) = (self.ring(k), self.ring(self.peer(k)));
        let mut packet_end = None;
        let mut i = from;
        while i != to {
            let s = ring.load(i);
            if !self.owns(s.buf_idx) {
                // Forwarded from another pipe of the region (or forged).
                self.region.mark_mixed();
            }
            peer.store(i, s);
            if s.flags & NS_BUF_CHANGED != 0 {
                ring.set_flags(i, s.flags & !NS_BUF_CHANGED);
            }
            i = next(i, self.nslots);
            if s.flags & NS_MOREFRAG == 0 {
                packet_end = Some(i);
            }
        }
        packet_end
    }

    /// Whether kring `k` has slots between the user's `cur` and `tail` after
    /// its last sync: room in a TX ring, packets the user has not seen in an
    /// RX ring.
    pub(super) fn cur_short_of_tail(&self, k: usize) -> bool {
        let kr = self.kr(k);
        kr.rcur != kr.hwtail
    }

    /// Whether a request (`exclusive` or not) may bind kring `k`, by the
    /// module's rule (`netmap_krings_get`): not if an exclusive binder holds
    /// it, nor, for an exclusive request, if anyone does.
    fn bindable(&self, k: usize, exclusive: bool) -> bool {
        self.binders(k)
            .all(|hs| !exclusive && self.region.handle(hs).get(h::FLAGS) & h::EXCLUSIVE == 0)
    }

    /// Binds krings `ks` for handle record `hs` (filled in, not yet live),
    /// as the module's `netmap_krings_get` does: every ring must take this
    /// binder (`exclusive` or not), or none is bound and the answer is
    /// `false`. The first binder of a ring finds it as the kernel left it;
    /// later ones share the view the others are driving. A bound RX ring
    /// that already holds packets makes the handle readable.
    pub(super) fn bind(&self, _g: &Guard<'_>, ks: &[usize], hs: u32, exclusive: bool) -> bool {
        if !ks.iter().all(|&k| self.bindable(k, exclusive)) {
            return false;
        }
        let mut pending = false;
        for &k in ks {
            let Some(mut kr) = self.checked_kr(k) else {
                continue;
            };
            if self.binders(k).next().is_none() {
                kr.rcur = kr.hwcur;
                self.set_kr(k, kr);
                self.ring(k).reset(kr.hwcur, kr.hwtail);
            }
            if self.decompose(k).1 == Dir::Rx && kr.pipe_tail != kr.hwcur {
                pending = true;
            }
        }
        self.region.handle(hs).set(h::STATE, LIVE);
        if pending {
            notify::readable(&self.region, hs);
        }
        true
    }
}

/// Tells `poll` waiters of `region` that something changed.
pub(super) fn wake(region: &Region) {
    let gen = region.word(H_GEN);
    gen.fetch_add(1, Ordering::Release);
    if region.word(H_WAITERS).load(Ordering::Relaxed) > 0 {
        futex_wake(gen, i32::MAX);
    }
}

/// Sleeps until a sync in the region changes something, or until
/// `deadline` (`None`: no deadline) has passed; `None` then. The lock is
/// let go meanwhile and taken again.
pub(super) fn wait<'a>(
    region: &'a Arc<Region>,
    g: Guard<'a>,
    deadline: Option<Instant>,
) -> io::Result<Option<Guard<'a>>> {
    let gen = region.word(H_GEN);
    let waiters = region.word(H_WAITERS);
    let seen = gen.load(Ordering::Acquire);
    waiters.fetch_add(1, Ordering::Relaxed);
    drop(g);
    let timeout = match deadline {
        None => Duration::from_secs(1),
        Some(d) => d.saturating_duration_since(Instant::now()),
    };
    if !timeout.is_zero() {
        futex_wait(gen, seen, timeout);
    }
    let g = region.lock();
    waiters.fetch_sub(1, Ordering::Relaxed);
    let g = g?;
    if deadline.is_some_and(|d| Instant::now() >= d) && gen.load(Ordering::Acquire) == seen {
        return Ok(None);
    }
    Ok(Some(g))
}
