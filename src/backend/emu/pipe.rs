//! Pipes and loopback ports: their rings in the region, the kernel-private
//! state of each ring, and the syncs that move slots between ring pairs.

use std::fmt;
use std::io;
use std::ptr::{self, NonNull};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use super::notify::Notifier;
use super::region::Region;
use super::registry::{End, PortName};
use super::BUF_SIZE;
use crate::backend::kring::Slot;
use crate::backend::kring::{SharedRing, RING_HDR, SLOT_SIZE};
use crate::backend::{lock, nm_prev as prev, within};
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
    /// Monitors of this ring, each fed in its ring of the same id.
    taps: Vec<Tap>,
}

/// A monitor of a ring: a copy monitor gets a copy of every packet that
/// passes the ring; a zero-copy monitor (`zero`) gets the buffers of the
/// packets the ring is done with, in exchange for free ones of its own.
#[derive(Debug, Clone)]
struct Tap {
    monitor: Weak<Pipe>,
    zero: bool,
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
pub(super) struct PipeState {
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
pub(super) struct Pipe {
    pub(super) region: Arc<Region>,
    name: String,
    /// 2 for a pipe, 1 for a loopback port.
    ends: usize,
    pub(super) nrings: u32,
    pub(super) nslots: u32,
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
            .field("name", &self.name)
            .field("mem_id", &self.region.mem_id)
            .field("nrings", &self.nrings)
            .field("nslots", &self.nslots)
            .finish_non_exhaustive()
    }
}

impl Pipe {
    pub(super) fn new(region: Arc<Region>, name: &PortName, nrings: u32, nslots: u32) -> io::Result<Pipe> {
        let ring_stride = (RING_HDR + nslots as usize * SLOT_SIZE).next_multiple_of(RING_UNIT);
        let ends = if name.id.is_some() { 2 } else { 1 };
        let nk = 2 * ends * nrings as usize;
        let nbufs = ends * nrings as usize * nslots as usize;
        let (rings_off, bufs_first) = region.alloc_pipe(nk * ring_stride, nbufs)?;
        let n = nslots;
        let pipe = Pipe {
            region,
            name: match &name.id {
                Some(id) => format!("{}{{{id}", name.parent),
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
                            taps: Vec::new(),
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

    /// This pipe's buffers: `ends * nrings * nslots` from `bufs_first`
    /// (each shared by the slot of a TX ring and the same slot of its peer).
    fn nbufs(&self) -> usize {
        self.ends * self.nrings as usize * self.nslots as usize
    }

    /// Whether buffer `idx` is one of this pipe's.
    fn owns(&self, idx: u32) -> bool {
        (idx as usize).wrapping_sub(self.bufs_first) < self.nbufs()
    }

    fn nkrings(&self) -> usize {
        2 * self.ends * self.nrings as usize
    }

    pub(super) fn ring_off(&self, k: usize) -> usize {
        self.rings_off + k * self.ring_stride
    }

    pub(super) fn ring(&self, k: usize) -> SharedRing<'_> {
        debug_assert!(k < self.nkrings());
        let ring = NonNull::new(self.region.at(self.ring_off(k))).expect("ring in region");
        // SAFETY: ring `k` of this pipe lies in its region, `RING_UNIT`
        // aligned, initialized with its slots at creation; the region stays
        // mapped while `self` (holding its `Arc`) is borrowed; the pipe's
        // code keeps slot indices below the ring's `num_slots`.
        unsafe { SharedRing::new(ring) }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, PipeState> {
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
    pub(super) fn txsync(&self, st: &mut PipeState, k: usize) -> bool {
        let Some(head) = self.prologue(st, k) else {
            return false;
        };
        // Copy monitors see what the user hands over, before the peer does.
        let from = st.krings[k].hwcur;
        self.feed_taps(st, k, (from, head), NS_TXMON, false);
        // Room the peer released since the last sync: its packets are
        // done with, and zero-copy monitors get their buffers.
        let (freed, now) = (st.krings[k].hwtail, st.krings[k].pipe_tail);
        let freed = (next(freed, self.nslots), next(now, self.nslots));
        self.feed_taps(st, k, freed, NS_TXMON, true);
        let ring = self.ring(k);
        let p = self.peer(k);
        let kr = &mut st.krings[k];
        kr.hwtail = kr.pipe_tail;
        // Only whole packets reach the peer.
        let publish = self.copy_to_peer(k, kr.hwcur, head);
        kr.hwcur = head;
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
    pub(super) fn rxsync(&self, st: &mut PipeState, k: usize) -> bool {
        let Some(head) = self.prologue(st, k) else {
            return false;
        };
        let n = self.nslots;
        let ring = self.ring(k);
        let p = self.peer(k);
        let kr = &mut st.krings[k];
        // Packets the peer published since the last sync, which copy
        // monitors see before the user does.
        let arrived = (kr.hwtail, kr.pipe_tail);
        kr.hwtail = kr.pipe_tail;
        let released = head != kr.hwcur;
        // The packets the user is done with go to zero-copy monitors before
        // their slots go back to the sender.
        let from = kr.hwcur;
        self.feed_taps(st, k, (from, head), 0, true);
        let kr = &mut st.krings[k];
        // The released slots (maybe with swapped buffers) go back to the
        // sender's ring as free room.
        self.copy_to_peer(k, kr.hwcur, head);
        kr.hwcur = head;
        ring.stamp();
        self.feed_taps(st, k, arrived, 0, false);
        let kr = &mut st.krings[k];
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

    /// Adds `monitor` (a loopback port's pipe of this region, shaped as
    /// this pipe) as a monitor of kring `k`: a copy monitor, or a
    /// zero-copy one if `zero`.
    pub(super) fn tap(&self, k: usize, monitor: &Arc<Pipe>, zero: bool) {
        let mut st = self.lock();
        let taps = &mut st.krings[k].taps;
        taps.retain(|t| t.monitor.strong_count() > 0);
        taps.push(Tap {
            monitor: Arc::downgrade(monitor),
            zero,
        });
    }

    /// Hands the packets in slots `[from, to)` of kring `k` to its monitors
    /// of one kind (`zero`), with `txmon` added to their flags.
    fn feed_taps(&self, st: &mut PipeState, k: usize, (from, to): (u32, u32), txmon: u16, zero: bool) {
        if from == to || st.krings[k].taps.is_empty() {
            return;
        }
        st.krings[k].taps.retain(|t| t.monitor.strong_count() > 0);
        let (_, _, id) = self.decompose(k);
        for tap in st.krings[k].taps.iter().filter(|t| t.zero == zero) {
            if let Some(monitor) = tap.monitor.upgrade() {
                monitor.take(id, self, k, (from, to), txmon, zero);
            }
        }
    }

    /// As a monitor (a loopback port): takes the packets in slots `[from,
    /// to)` of `src`'s kring `sk` (slots the kernel holds there) into its
    /// ring `id`, as many of the latest as there is room for, as netmap's
    /// monitors do, and makes them readable. A copy monitor copies them
    /// into its own buffers only; a zero-copy one (`zero`) takes their
    /// buffers, giving each slot a free buffer of its own in exchange
    /// (`NS_BUF_CHANGED`).
    fn take(&self, id: u32, src: &Pipe, sk: usize, (from, to): (u32, u32), txmon: u16, zero: bool) {
        let mut st = self.lock();
        let t = self.kidx(End::Master, Dir::Tx, id);
        let n = self.nslots;
        let kr = &mut st.krings[t];
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
        let kr = &mut st.krings[t];
        kr.hwcur = i;
        ring.set_tail(kr.hwtail);
        if let Some(e) = publish {
            let pk = &mut st.krings[self.peer(t)];
            pk.pipe_tail = e;
            pk.notify(Notifier::readable);
            self.wake(&mut st);
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
    pub(super) fn cur_short_of_tail(st: &PipeState, k: usize) -> bool {
        st.krings[k].rcur != st.krings[k].hwtail
    }

    /// Binds krings `ks` for `binder`, as the module's `netmap_krings_get`
    /// does: every ring must take this binder (`exclusive` or not), or none
    /// is bound and the answer is `false`. The first binder of a ring finds
    /// it as the kernel left it; later ones share the view the others are
    /// driving. A bound RX ring that already holds packets makes `binder`
    /// readable.
    pub(super) fn bind(&self, ks: &[usize], binder: &Arc<Notifier>, exclusive: bool) -> bool {
        let mut st = self.lock();
        if !ks.iter().all(|&k| st.krings[k].bindable(exclusive)) {
            return false;
        }
        let mut pending = false;
        for &k in ks {
            let kr = &mut st.krings[k];
            if kr.binders.is_empty() {
                kr.rcur = kr.hwcur;
                self.ring(k).reset(kr.hwcur, kr.hwtail);
            }
            kr.binders.push(Arc::clone(binder));
            kr.exclusive |= exclusive;
            if self.decompose(k).1 == Dir::Rx && kr.pipe_tail != kr.hwcur {
                pending = true;
            }
        }
        if pending {
            binder.readable();
        }
        true
    }

    /// The module's `netmap_krings_put`: `binder` leaves each of krings
    /// `ks`, and drops the exclusive flag if it set it (`exclusive`).
    pub(super) fn unbind(&self, ks: impl Iterator<Item = usize>, binder: &Arc<Notifier>, exclusive: bool) {
        let mut st = self.lock();
        for k in ks {
            let kr = &mut st.krings[k];
            if let Some(i) = kr.binders.iter().position(|n| Arc::ptr_eq(n, binder)) {
                kr.binders.swap_remove(i);
            }
            if exclusive {
                kr.exclusive = false;
            }
        }
    }

    /// Sleeps until the other end changes something, or until `deadline`
    /// (`None`: no deadline) has passed; `None` then. A condvar wait takes
    /// the time left as a `Duration`: no rounding to milliseconds, and no
    /// signal cuts it short.
    pub(super) fn wait<'a>(
        &'a self,
        mut st: MutexGuard<'a, PipeState>,
        deadline: Option<Instant>,
    ) -> Option<MutexGuard<'a, PipeState>> {
        let seen = st.generation;
        st.waiters += 1;
        while st.generation == seen {
            match deadline {
                None => st = self.changed.wait(st).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        st.waiters -= 1;
                        return None;
                    }
                    st = self
                        .changed
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
        st.waiters -= 1;
        Some(st)
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // A slot naming another pipe's buffer means one of this pipe's may
        // be in another pipe's rings now (forwarding swaps them): then its
        // buffers must not be handed out again while the region lives.
        let stray = (0..self.nkrings()).any(|k| {
            let ring = self.ring(k);
            (0..self.nslots).any(|i| !self.owns(ring.load(i).buf_idx))
        });
        self.region.free_pipe(
            self.rings_off,
            self.nkrings() * self.ring_stride,
            self.bufs_first,
            self.nbufs(),
            stray,
        );
    }
}
