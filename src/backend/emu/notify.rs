//! Readiness across processes: each registered handle's FIFO.
//!
//! A handle's descriptor is a FIFO beside the region file, made at
//! REGISTER, opened for reading and writing (so it never reports end of
//! file, and epoll sees both `EPOLLIN` and `EPOLLOUT` on it); any process of
//! the region signals it by writing into it or reading from it through a
//! descriptor of its own ([`Region::with_fifo`]).
//!
//! netmap's own `poll` reports `POLLIN` when, after an rxsync, a bound RX
//! ring has slots between `cur` and `tail` (packets the user has not seen),
//! and `POLLOUT` when, after a txsync, a bound TX ring has room between `cur`
//! and `tail`; the kernel wakes sleepers whenever a sync of the peer changes
//! either. A FIFO is readable while it holds a byte and writable while it has
//! room; a write wakes `EPOLLIN` waiters, and a read of a full FIFO wakes
//! `EPOLLOUT` waiters. The rule, applied under the
//! region's lock so that it cannot interleave with a sync, with the
//! handle's `armed` word saying whether the FIFO holds a byte:
//!
//! * **readable**: the FIFO holds a byte exactly while a bound RX ring may
//!   hold packets the user has not seen. A peer TX sync that publishes
//!   packets into a ring of this handle writes one (a readable edge, and a
//!   wake-up of `EPOLLIN` waiters even when it already held one, since these
//!   are new packets). An RX sync of this handle after which no bound RX
//!   ring has unseen packets empties it. Binding a ring that already holds
//!   packets writes one.
//! * **writable**: a peer RX sync that frees room in a TX ring of this handle
//!   whose last txsync left it full (`cur` at `tail`: the user is waiting for
//!   room, as a mio handler waits for `WRITABLE`) wakes waiters without
//!   changing readability: the FIFO is filled and emptied (an `EPOLLOUT`
//!   wake-up), then given back its byte if it held one. A ring
//!   that still had room gets no edge: its user is not waiting, and every
//!   edge opens a window for a spurious readable report.
//!
//! The FIFO reports `POLLOUT` at all times, so only its edges carry the TX
//! meaning: a level-triggered caller should use
//! [`PortFd::poll`](crate::backend::PortFd::poll), which checks the rings
//! as netmap does. No one else may read the FIFO, or `armed` drifts from its
//! contents until the next drain.

use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr;
use std::sync::atomic::Ordering;

use super::region::{h, Region};

/// Writes one byte (wakes `EPOLLIN` waiters); a full FIFO stays readable.
fn add(fd: &OwnedFd) {
    let one = 1u8;
    // SAFETY: the fd is a live FIFO; the buffer is one readable byte.
    unsafe { libc::write(fd.as_raw_fd(), ptr::addr_of!(one).cast(), 1) };
}

/// Empties the FIFO.
fn take(fd: &OwnedFd) {
    let mut buf = [0u8; 1024];
    // Writers write under the region's lock, which the caller holds, so a
    // read short of the buffer has taken everything; the loop ends there, at
    // EAGAIN (empty), or after more than a FIFO holds (another process
    // writing without the lock).
    for _ in 0..FIFO_SIZE / buf.len() + 1 {
        // SAFETY: the fd is a live, non-blocking FIFO; the buffer is
        // writable for its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < buf.len() as isize {
            break;
        }
    }
}

/// A readable edge for handle `hs`.
pub(super) fn readable(region: &Region, hs: u32) {
    region.with_fifo(hs, add);
    region.handle(hs).set(h::ARMED, 1);
}

/// Empties handle `hs`'s FIFO if it holds a byte.
pub(super) fn drain(region: &Region, hs: u32) {
    if region.handle(hs).word(h::ARMED).swap(0, Ordering::Relaxed) != 0 {
        region.with_fifo(hs, take);
    }
}

/// A writable edge for handle `hs`: the FIFO is filled, then emptied (a
/// pipe wakes `EPOLLOUT` waiters only when it stops being full), then given
/// its byte back if it held one.
pub(super) fn writable(region: &Region, hs: u32) {
    let armed = region.handle(hs).get(h::ARMED) != 0;
    region.with_fifo(hs, |fd| {
        fill(fd);
        take(fd);
        if armed {
            add(fd);
        }
    });
}

/// Fills the FIFO ([`FIFO_SIZE`] bytes at most).
fn fill(fd: &OwnedFd) {
    let page = [0u8; 4096];
    for _ in 0..FIFO_SIZE / page.len() + 1 {
        // SAFETY: the fd is a live, non-blocking FIFO; the buffer is
        // readable for its length. EAGAIN (full) ends the loop.
        if unsafe { libc::write(fd.as_raw_fd(), page.as_ptr().cast(), page.len()) } <= 0 {
            break;
        }
    }
}

/// Bytes a handle's FIFO holds: two pages, so that the byte of a readable
/// FIFO never fills it (a full FIFO is not writable).
pub(super) const FIFO_SIZE: usize = 8192;

/// Sizes a new FIFO.
pub(super) fn size_fifo(fd: &OwnedFd) {
    // SAFETY: F_SETPIPE_SZ takes an int; failing leaves the default size,
    // which only makes `fill` write more.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, FIFO_SIZE as libc::c_int) };
}
