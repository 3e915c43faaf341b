//! Syncs and poll: the netmap rings' `head`/`cur`/`tail` against the
//! sockets' fill, RX, TX and completion rings, and the [`PortFd`] impl.

use std::ffi::c_int;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::ptr;

use super::sys::{kick_rx, kick_tx, XdpDesc};
use super::{AfXdpFd, Port, RxState, TxState};
use crate::backend::afpacket::{epoll_arm, epoll_errors, poll_rings};
use crate::backend::kring::Slot;
use crate::backend::sys::{self, Deadline};
use crate::backend::{errno, nm_prev as prev, within, PortFd, SyncDir};
use crate::ffi::nm_next as next;
use crate::ffi::{NETMAP_MAX_FRAGS, NS_BUF_CHANGED, NS_MOREFRAG};
use crate::XdpMode;

/// Copy mode sends at most a budget of frames per `sendto` (32 by
/// default) and answers `EAGAIN` while more wait; a sync repeats the call
/// this many times at most before it leaves the rest to the next sync.
const MAX_KICKS: u32 = 64;

impl Port {
    fn rxsync(&self, fd: BorrowedFd<'_>, rx: &RxState) -> io::Result<bool> {
        let v = &rx.v;
        let (hwcur, hwtail) = (rx.hwcur.get(), rx.hwtail.get());
        let (head, cur) = v.shared().head_cur();
        if head >= v.n || !within(head, hwcur, hwtail) || !within(cur, head, hwtail) {
            v.shared().reset(hwcur, hwtail);
            return Err(errno(libc::EINVAL));
        }
        // The released slots' buffers go to the fill ring: the user may have
        // swapped any frame of this port's UMEM in. A slot naming none (a
        // corrupt index, which reading the frame reported) gives back the
        // frame it was handed with.
        let room = rx.fill.free();
        let mut k = 0;
        let mut j = hwcur;
        while j != head {
            let s = v.shared().load(j);
            let given = &rx.given[j as usize];
            let addr = self
                .addr(s.buf_idx, 0, 0)
                .or_else(|| self.addr(given.get(), 0, 0));
            // More buffers than the ring has frames would mean some index
            // appears twice: the extra one is dropped, the ring has enough.
            if let Some(addr) = addr.filter(|_| k < room) {
                rx.fill.put(k, addr);
                k += 1;
            }
            j = next(j, v.n);
        }
        rx.fill.submit(k);
        rx.hwcur.set(head);
        if k > 0 && rx.fill.needs_wakeup() {
            // A zero-copy driver waits for a system call to refill its queue.
            let _ = kick_rx(fd);
        }
        // Take the packets the kernel received, leaving one slot free.
        let ready = rx.rx.ready();
        let mut i = 0;
        let mut t = hwtail;
        while i < ready && next(t, v.n) != head {
            let d = rx.rx.get(i);
            i += 1;
            let Some((buf_idx, off)) = self.buf_of(d.addr) else {
                continue;
            };
            let len = (d.len as usize).min(self.frame - off).min(u16::MAX as usize) as u16;
            rx.given[t as usize].set(buf_idx);
            v.shared().store(
                t,
                Slot {
                    buf_idx,
                    len,
                    flags: 0,
                    ptr: off as u64,
                },
            );
            t = next(t, v.n);
        }
        rx.rx.release(i);
        rx.hwtail.set(t);
        // netmap stamps every RX sync.
        v.shared().stamp();
        v.shared().set_tail(t);
        Ok(cur != t)
    }

    fn txsync(&self, fd: BorrowedFd<'_>, tx: &TxState) -> io::Result<bool> {
        let v = &tx.v;
        let (hwcur, tail) = (tx.hwcur.get(), tx.hwtail.get());
        let (head, _) = v.shared().head_cur();
        if head >= v.n || !within(head, hwcur, tail) {
            v.shared().reset(hwcur, tail);
            return Err(errno(libc::EINVAL));
        }
        let mut failure = None;
        let mut free = tx.free.borrow_mut();
        let room = tx.tx.free();
        let mut k = 0;
        let mut s = hwcur;
        while s != head && k < room {
            let Some(e) = packet_end(v, s, head) else {
                // Not published whole yet: send it at a later sync.
                break;
            };
            let mut first = v.shared().load(s);
            if self.buf_ptr(first.buf_idx).is_none() {
                // A corrupt index (which the ring handle reported): the
                // packet is dropped, the frame the slot was handed with
                // waits for a slot again.
                first.buf_idx = tx.given[s as usize].get();
                first.len = 0;
            }
            let off = first.ptr as usize & (self.frame - 1);
            let desc = if first.len == 0 {
                // Nothing to send; the other slots' frames wait for slots.
                if e != s {
                    let _ = self.gather(v, first, s, e, &mut free);
                }
                None
            } else if e == s {
                let len = first.len as usize;
                match self.addr(first.buf_idx, off, len).filter(|_| len <= self.max_len) {
                    Some(addr) => Some((addr, len)),
                    None => {
                        failure = Some(errno(libc::EMSGSIZE));
                        None
                    }
                }
            } else {
                let d = self.gather(v, first, s, e, &mut free);
                if d.is_none() {
                    failure = Some(errno(libc::EMSGSIZE));
                }
                d
            };
            match desc {
                Some((addr, len)) => {
                    tx.tx.put(
                        k,
                        XdpDesc {
                            addr,
                            len: len as u32,
                            options: 0,
                        },
                    );
                    k += 1;
                }
                None => {
                    // Dropped: the frame waits for a slot again.
                    if self.buf_ptr(first.buf_idx).is_some() && free.len() < v.n as usize {
                        free.push_back(first.buf_idx);
                    }
                }
            }
            s = next(e, v.n);
        }
        tx.tx.submit(k);
        tx.hwcur.set(s);
        if tx.tx.outstanding() > 0 && tx.tx.needs_wakeup() {
            if let Err(e) = kick(fd, tx) {
                failure.get_or_insert(e);
            }
        }
        // Frames the kernel is done with refill the slots from `tail` on.
        let done = tx.comp.ready();
        for i in 0..done {
            if let Some((buf_idx, _)) = self.buf_of(tx.comp.get(i)) {
                if free.len() < v.n as usize {
                    free.push_back(buf_idx);
                }
            }
        }
        tx.comp.release(done);
        let mut t = tail;
        let last = prev(s, v.n);
        while t != last {
            let Some(buf_idx) = free.pop_front() else { break };
            // netmap's word for "this slot holds another buffer than before".
            let flags = if tx.given[t as usize].replace(buf_idx) == buf_idx {
                0
            } else {
                NS_BUF_CHANGED
            };
            v.shared().store(
                t,
                Slot {
                    buf_idx,
                    len: 0,
                    flags,
                    ptr: 0,
                },
            );
            t = next(t, v.n);
        }
        tx.hwtail.set(t);
        v.shared().set_tail(t);
        match failure {
            Some(e) => Err(e),
            None => Ok(head != t),
        }
    }

    /// Copies the packet of TX slots `s..=e` into slot `s`'s buffer (as
    /// `first`, the slot's values, says), after its first fragment, and
    /// frees the other slots' buffers; returns the descriptor's address and
    /// length, or `None` if the packet does not fit one frame or a slot is
    /// corrupt (the packet is dropped).
    fn gather(
        &self,
        v: &super::RingView,
        first: Slot,
        s: u32,
        e: u32,
        free: &mut std::collections::VecDeque<u32>,
    ) -> Option<(u64, usize)> {
        let off = first.ptr as usize & (self.frame - 1);
        let dst = self.buf_ptr(first.buf_idx);
        let mut total = first.len as usize;
        let mut ok = self.addr(first.buf_idx, off, total).is_some();
        let mut k = next(s, v.n);
        loop {
            let sl = v.shared().load(k);
            let soff = sl.ptr as usize & (self.frame - 1);
            let len = sl.len as usize;
            match (dst, self.buf_ptr(sl.buf_idx)) {
                (Some(dst), Some(src))
                    if ok
                        && self.addr(sl.buf_idx, soff, len).is_some()
                        && off + total + len <= self.frame =>
                {
                    // SAFETY: both are frames of this port's UMEM that user
                    // space owns (TX slots not yet handed over), `len` bytes
                    // from `soff` inside the source and `off + total + len`
                    // inside the destination (checked); `ptr::copy` allows
                    // the two to be one frame.
                    unsafe { ptr::copy(src.add(soff), dst.add(off + total), len) };
                    total += len;
                }
                _ => ok = false,
            }
            if sl.buf_idx != first.buf_idx && self.buf_ptr(sl.buf_idx).is_some() && free.len() < v.n as usize
            {
                free.push_back(sl.buf_idx);
            }
            if k == e {
                break;
            }
            k = next(k, v.n);
        }
        let addr = self.addr(first.buf_idx, off, total)?;
        (ok && total <= self.max_len).then_some((addr, total))
    }

    /// Syncs the rings of `dir` for `poll`: `want` if one of them is ready,
    /// `POLLERR` if a sync failed.
    fn poll_sync(&self, dir: SyncDir, want: i16) -> i16 {
        match self.sync_all(dir) {
            Ok(true) => want,
            Ok(false) => 0,
            Err(_) => libc::POLLERR,
        }
    }

    fn sync_all(&self, dir: SyncDir) -> io::Result<bool> {
        let mut ready = false;
        let mut failure = None;
        for s in &self.socks {
            let r = match dir {
                SyncDir::Tx => s.tx.as_ref().map(|t| self.txsync(s.fd.as_fd(), t)),
                SyncDir::Rx => s.rx.as_ref().map(|r| self.rxsync(s.fd.as_fd(), r)),
            };
            match r {
                Some(Ok(r)) => ready |= r,
                Some(Err(e)) => {
                    failure.get_or_insert(e);
                }
                None => {}
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(ready),
        }
    }

    /// Whether some TX ring has frames with the kernel, whose completion
    /// the poll waits for.
    fn tx_in_flight(&self) -> bool {
        self.socks
            .iter()
            .filter_map(|s| s.tx.as_ref())
            .any(|t| next(t.hwtail.get(), t.v.n) != t.hwcur.get())
    }
}

/// Asks the kernel to send what the TX ring holds: again while copy mode's
/// budget cuts a call short and the ring drains; a device queue that is
/// full (`EAGAIN` with no progress), or busy (`EBUSY`), is left to the next
/// sync. `ENETDOWN`, `ENXIO` and the like are errors.
fn kick(fd: BorrowedFd<'_>, tx: &TxState) -> io::Result<()> {
    for _ in 0..MAX_KICKS {
        let before = tx.tx.outstanding();
        match sys::retry(|| kick_tx(fd)) {
            Ok(()) => return Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOBUFS)) => {
                let after = tx.tx.outstanding();
                if after == 0 || after >= before {
                    return Ok(());
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The last slot of the TX packet that starts at slot `s` (a `NS_MOREFRAG`
/// chain), or `None` if the chain reaches `head`: the user has not
/// published it whole yet.
fn packet_end(v: &super::RingView, s: u32, head: u32) -> Option<u32> {
    let mut e = s;
    let mut n = 1;
    while v.shared().load(e).flags & NS_MOREFRAG != 0 && n < NETMAP_MAX_FRAGS {
        let nx = next(e, v.n);
        if nx == head {
            return None;
        }
        e = nx;
        n += 1;
    }
    Some(e)
}

impl PortFd for AfXdpFd {
    fn max_packet(&self) -> Option<usize> {
        self.port.as_ref().map(|p| p.max_len)
    }

    fn xdp_mode(&self) -> Option<XdpMode> {
        let p = self.port.as_ref()?;
        Some(if p.zero_copy {
            XdpMode::ZeroCopy
        } else {
            match p.attach.as_ref().map(|a| a.mode) {
                Some(super::prog::Attach::Native) => XdpMode::Native,
                _ => XdpMode::Generic,
            }
        })
    }

    fn sync(&self, dir: SyncDir) -> io::Result<()> {
        let port = self.port.as_ref().ok_or_else(|| errno(libc::ENXIO))?;
        port.sync_all(dir).map(drop)
    }

    fn poll(&self, events: i16, deadline: Deadline) -> io::Result<i16> {
        let Some(port) = self.port.as_ref() else {
            return Ok(libc::POLLERR);
        };
        let want_tx = events & (libc::POLLOUT | libc::POLLWRNORM) != 0;
        // The kernel wakes a socket for new packets; for completions only
        // in copy mode, when the frame's skb is freed. Waiting for TX room,
        // look again each millisecond as well.
        let wait = |deadline: Deadline| {
            let slice = match want_tx && port.tx_in_flight() {
                true => Deadline::after(Some(std::time::Duration::from_millis(1))),
                false => deadline,
            };
            let slice = match (slice.instant(), deadline.instant()) {
                (Some(s), Some(d)) if d < s => deadline,
                _ => slice,
            };
            self.wait(slice)
        };
        poll_rings(
            events,
            deadline,
            port.txpoll,
            |dir, want| port.poll_sync(dir, want),
            |op| self.arm(port, op),
            wait,
        )
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.port {
            Some(Port { events: Some(ep), .. }) => ep.as_fd(),
            Some(Port { socks, .. }) if socks.len() == 1 => socks[0].fd.as_fd(),
            _ => self.waiter.as_fd(),
        }
    }
}

impl AfXdpFd {
    /// Registers (or removes) every socket in the private epoll set.
    fn arm(&self, port: &Port, op: c_int) -> io::Result<()> {
        epoll_arm(self.waiter.as_fd(), op, port.socks.iter().map(|s| s.fd.as_fd()))
    }

    /// Sleeps on the private set until an event or `deadline`; returns
    /// whether a socket reported an error.
    fn wait(&self, deadline: Deadline) -> io::Result<bool> {
        Ok(!epoll_errors(self.waiter.as_fd(), deadline)?.is_empty())
    }
}
