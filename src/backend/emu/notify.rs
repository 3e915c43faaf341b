//! The readiness notifier: each handle's eventfd.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::sys::cvt;

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
/// meaning: a level-triggered caller should use
/// [`PortFd::poll`](crate::backend::PortFd::poll), which checks the rings
/// as netmap does. The counter must not be read by anyone else, or its state
/// drifts from `armed` until the next drain.
#[derive(Debug)]
pub(super) struct Notifier {
    pub(super) efd: OwnedFd,
    /// Whether the counter is non-zero; changed only under the pipe's mutex.
    armed: AtomicBool,
}

impl Notifier {
    pub(super) fn new() -> io::Result<Notifier> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new
        // file descriptor that nothing else owns.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
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

    pub(super) fn readable(&self) {
        self.add();
        self.armed.store(true, Ordering::Relaxed);
    }

    pub(super) fn drain(&self) {
        if self.armed.swap(false, Ordering::Relaxed) {
            self.take();
        }
    }

    pub(super) fn writable(&self) {
        if self.armed.load(Ordering::Relaxed) {
            self.take();
            self.add();
        } else {
            self.add();
            self.take();
        }
    }
}
