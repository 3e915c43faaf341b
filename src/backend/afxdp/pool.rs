//! The memory AF_XDP ports live in: one address range holding the ports'
//! `netmap_if`s, ring headers and slots, then the buffers, which every
//! port registers whole as its UMEM.
//!
//! A port opened without a memory id has a pool of its own, sized for it.
//! Ports of this process named with the same memory id (`afxdp:va@1` and
//! `afxdp:vb@1`) share one pool: each registers the same buffers as its
//! UMEM, so a buffer index means the same frame in all of them and
//! `TxRing::forward` between them is a buffer swap, as between netmap
//! ports of one allocator. Two registrations of the same pages are two
//! UMEMs to the kernel over one memory: a frame received by one port can
//! leave through another.
//!
//! A shared pool holds [`SHARED_FRAMES`] frames. Each port takes the
//! frames its rings need when it opens and gives back the frames it holds
//! when it closes (swaps trade frames one for one, so it holds as many as
//! it took); frames still with the kernel at that moment (a TX frame sent
//! and not completed, a zero-copy driver's RX frames) are not given back
//! until the pool goes with its last port.

use std::collections::HashMap;
use std::io;
use std::ptr::NonNull;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use crate::backend::afpacket::{MemId, Region};
use crate::backend::sys::page_size;
use crate::backend::{errno, lock};
use crate::ring::RESERVED_BUFS;

/// Frames of a shared pool: 32 MiB of 2048-byte frames, room for eight
/// one-queue ports of default rings.
pub(super) const SHARED_FRAMES: u32 = 16384;
/// Bytes for the `netmap_if`s and rings of a shared pool's ports (address
/// space; only the pages ports use are ever touched).
const SHARED_HEAD: usize = 8 << 20;

/// Shared pools by memory id.
static SHARED: LazyLock<Mutex<HashMap<u16, Weak<Pool>>>> = LazyLock::new(Mutex::default);

/// What of a pool is free.
#[derive(Debug)]
struct State {
    /// Free frames, as netmap buffer indices.
    free: Vec<u32>,
    /// `is_free[f]`: frame `f` (buffer `RESERVED_BUFS + f`) is in `free`.
    is_free: Vec<bool>,
    /// Free parts of the header area, `(offset, length)`, sorted.
    holes: Vec<(usize, usize)>,
}

/// One pool.
#[derive(Debug)]
pub(super) struct Pool {
    pub(super) region: Arc<Region>,
    /// Bytes before frame 0 (a page multiple: the UMEM starts there).
    pub(super) head_len: usize,
    pub(super) frame: usize,
    pub(super) nbufs: u32,
    pub(super) mem_id: MemId,
    state: Mutex<State>,
}

impl Pool {
    fn new(head_len: usize, nbufs: u32, frame: usize, mem_id: MemId) -> io::Result<Pool> {
        let head_len = head_len.next_multiple_of(page_size());
        let region = Arc::new(Region::reserve(head_len + nbufs as usize * frame)?);
        Ok(Pool {
            region,
            head_len,
            frame,
            nbufs,
            mem_id,
            state: Mutex::new(State {
                free: (0..nbufs).rev().map(|f| f + RESERVED_BUFS).collect(),
                is_free: vec![true; nbufs as usize],
                holes: vec![(0, head_len)],
            }),
        })
    }

    /// A pool for one port alone: `head_len` bytes of headers, `nbufs`
    /// frames of `frame` bytes.
    pub(super) fn private(head_len: usize, nbufs: u32, frame: usize) -> io::Result<Arc<Pool>> {
        Ok(Arc::new(Pool::new(head_len, nbufs, frame, MemId::new()?)?))
    }

    /// The shared pool of memory id `id`, made if no live port has it;
    /// `EINVAL` if it has frames of another size than `frame` (ports of
    /// different MTUs cannot share frames), `EBUSY` if a port of another
    /// kind holds the id.
    pub(super) fn shared(id: u16, frame: usize) -> io::Result<Arc<Pool>> {
        let mut reg = lock(&SHARED);
        if let Some(p) = reg.get(&id).and_then(Weak::upgrade) {
            return if p.frame == frame {
                Ok(p)
            } else {
                Err(errno(libc::EINVAL))
            };
        }
        let p = Arc::new(Pool::new(SHARED_HEAD, SHARED_FRAMES, frame, MemId::claim(id)?)?);
        reg.retain(|_, w| w.strong_count() > 0);
        reg.insert(id, Arc::downgrade(&p));
        Ok(p)
    }

    /// Frame 0 (buffer `RESERVED_BUFS`).
    pub(super) fn bufs(&self) -> NonNull<u8> {
        self.region.ptr(self.head_len)
    }

    /// `len` bytes of the header area, 256-aligned: their offset, or
    /// `ENOMEM` when the area is full.
    pub(super) fn take_header(&self, len: usize) -> io::Result<usize> {
        let len = len.next_multiple_of(crate::backend::afpacket::RING_ALIGN);
        let mut st = lock(&self.state);
        let i = st
            .holes
            .iter()
            .position(|&(_, l)| l >= len)
            .ok_or_else(|| errno(libc::ENOMEM))?;
        let (off, l) = st.holes[i];
        if l == len {
            st.holes.remove(i);
        } else {
            st.holes[i] = (off + len, l - len);
        }
        Ok(off)
    }

    /// `n` free frames, or `ENOMEM` (and none) if the pool has fewer.
    pub(super) fn take_frames(&self, n: u32) -> io::Result<Vec<u32>> {
        let mut st = lock(&self.state);
        let n = n as usize;
        if st.free.len() < n {
            return Err(errno(libc::ENOMEM));
        }
        let at = st.free.len() - n;
        let taken = st.free.split_off(at);
        for &b in &taken {
            st.is_free[(b - RESERVED_BUFS) as usize] = false;
        }
        Ok(taken)
    }

    /// Takes back the header part at `off` of `len` bytes and the frames
    /// `frames` (buffer indices; any outside the pool, or free already, are
    /// ignored).
    pub(super) fn give_back(&self, off: usize, len: usize, frames: impl IntoIterator<Item = u32>) {
        let len = len.next_multiple_of(crate::backend::afpacket::RING_ALIGN);
        let mut st = lock(&self.state);
        for b in frames {
            let f = b.wrapping_sub(RESERVED_BUFS) as usize;
            if f < st.is_free.len() && !st.is_free[f] {
                st.is_free[f] = true;
                st.free.push(b);
            }
        }
        let i = st.holes.partition_point(|&(o, _)| o < off);
        st.holes.insert(i, (off, len));
        // Merge with the neighbours.
        if i + 1 < st.holes.len() && st.holes[i].0 + st.holes[i].1 == st.holes[i + 1].0 {
            st.holes[i].1 += st.holes[i + 1].1;
            st.holes.remove(i + 1);
        }
        if i > 0 && st.holes[i - 1].0 + st.holes[i - 1].1 == st.holes[i].0 {
            st.holes[i - 1].1 += st.holes[i].1;
            st.holes.remove(i);
        }
    }

    /// How many frames are free (for tests).
    #[cfg(test)]
    fn free_frames(&self) -> usize {
        lock(&self.state).free.len()
    }
}

/// A port's part of a pool: its header bytes and the frames it holds,
/// given back when the lease drops. Until the port closes, `frames` is
/// what it took; at close, what it holds then.
#[derive(Debug)]
pub(super) struct Lease {
    pub(super) pool: Arc<Pool>,
    /// Offset of the port's header part (its `netmap_if`).
    pub(super) header: usize,
    header_len: usize,
    pub(super) frames: Vec<u32>,
}

impl Lease {
    /// `header_len` bytes of headers and `frames` frames of `pool`.
    pub(super) fn take(pool: Arc<Pool>, header_len: usize, frames: u32) -> io::Result<Lease> {
        let header = pool.take_header(header_len)?;
        match pool.take_frames(frames) {
            Ok(frames) => Ok(Lease {
                pool,
                header,
                header_len,
                frames,
            }),
            Err(e) => {
                pool.give_back(header, header_len, []);
                Err(e)
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let frames = std::mem::take(&mut self.frames);
        self.pool.give_back(self.header, self.header_len, frames);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_headers_come_back_and_merge() {
        let p = Pool::private(3 * 4096, 8, 2048).unwrap();
        let a = p.take_frames(5).unwrap();
        assert!(p.take_frames(4).is_err());
        assert_eq!(p.free_frames(), 3);
        let h1 = p.take_header(300).unwrap();
        let h2 = p.take_header(4096).unwrap();
        assert_eq!((h1, h2), (0, 512));
        // Duplicates and strangers are ignored.
        p.give_back(h1, 300, a.iter().copied().chain([a[0], 0, 1, 999]));
        assert_eq!(p.free_frames(), 8);
        p.give_back(h2, 4096, []);
        assert_eq!(lock(&p.state).holes, [(0, 3 * 4096)]);
        assert_eq!(p.take_header(3 * 4096).unwrap(), 0);
    }

    #[test]
    fn a_shared_pool_lives_while_a_port_holds_it() {
        let a = Pool::shared(4321, 2048).unwrap();
        let b = Pool::shared(4321, 2048).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(
            Pool::shared(4321, 4096).unwrap_err().raw_os_error(),
            Some(libc::EINVAL)
        );
        assert_eq!(a.nbufs, SHARED_FRAMES);
        drop((a, b));
        let c = Pool::shared(4321, 4096).unwrap();
        assert_eq!(c.frame, 4096);
    }
}
