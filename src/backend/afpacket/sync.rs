//! Syncs and poll: the rings' `head`/`cur`/`tail` against the frames'
//! status words, and the [`PortFd`] impl.

use std::ffi::c_int;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::ptr;
use std::sync::atomic::Ordering;

use super::rings::{Port, RingView, RxState, TxState};
use super::sys::{
    epoll_arm, epoll_errors, getsockopt_int, kick_tx, Tpacket2Hdr, TPACKET2_HDRLEN, TP_STATUS_AVAILABLE,
    TP_STATUS_KERNEL, TP_STATUS_SENDING, TP_STATUS_SEND_REQUEST, TP_STATUS_USER, TP_STATUS_VLAN_TPID_VALID,
    TP_STATUS_VLAN_VALID, TP_STATUS_WRONG_FORMAT, TX_BASE, VNET_HDR,
};
use super::AfPacketFd;
use crate::backend::kring::Slot;
use crate::backend::sys::Deadline;
use crate::backend::{errno, nm_prev as prev, within, PortFd, SyncDir};
use crate::ffi::nm_next as next;
use crate::ffi::{NETMAP_MAX_FRAGS, NS_MOREFRAG};

impl Port {
    fn rxsync(&self, rx: &RxState) -> io::Result<bool> {
        let v = &rx.v;
        let (hwcur, hwtail) = (rx.hwcur.get(), rx.hwtail.get());
        let (head, cur) = v.shared().head_cur();
        if head >= v.n || !within(head, hwcur, hwtail) || !within(cur, head, hwtail) {
            v.shared().reset(hwcur, hwtail);
            return Err(errno(libc::EINVAL));
        }
        // Give the released frames back.
        let mut j = hwcur;
        while j != head {
            let s = v.shared().load(j);
            if s.buf_idx != v.first + j || s.ptr != 0 {
                self.settle_swapped_rx(v, j, s);
            }
            // Release: the user's (and our) reads of the frame happen before
            // the kernel may reuse it.
            v.status(j).store(TP_STATUS_KERNEL, Ordering::Release);
            j = next(j, v.n);
        }
        rx.hwcur.set(head);
        // Take the frames the kernel filled, leaving one slot free.
        let mut t = hwtail;
        while next(t, v.n) != head {
            let st = v.status(t).load(Ordering::Acquire);
            if st & TP_STATUS_USER == 0 {
                break;
            }
            // SAFETY: the frame has TP_STATUS_USER: the kernel is done with it.
            let h = unsafe { v.hdr(t) };
            let (off, len) = rx_packet(v, t, st, &h);
            v.set_own(t, len, 0, off as u64);
            t = next(t, v.n);
        }
        rx.hwtail.set(t);
        // netmap stamps every RX sync.
        v.shared().stamp();
        v.shared().set_tail(t);
        Ok(cur != t)
    }

    /// RX slot `j` is being released holding another buffer (`s`): it traded
    /// buffers with a TX slot of this port (`TxRing::forward`). If that TX
    /// slot still waits for a txsync, copy the packet into its own frame now,
    /// before RX frame `j` goes back to the kernel. Then the RX slot gets its
    /// frame back.
    fn settle_swapped_rx(&self, v: &RingView, j: u32, s: Slot) {
        let mine = v.first + j;
        if let Some((tx, k)) = self.tx_owner(s.buf_idx) {
            let ts = tx.v.shared().load(k);
            let (head, _) = tx.v.shared().head_cur();
            let waiting = head < tx.v.n && within(k, tx.hwcur.get(), head) && k != head;
            if ts.buf_idx == mine && waiting {
                let off = (ts.ptr as usize) & (self.frame - 1);
                let dst = tx.v.frame(k);
                let len = ts.len as usize;
                let copied = match self.buf(mine, off) {
                    Some((src, cap)) if len <= cap && self.tx_off + len <= self.frame => {
                        // SAFETY: the source is RX frame `j` (user-owned until
                        // the status store that follows), the destination TX
                        // frame `k` (not handed to the kernel: its slot waits
                        // for a txsync); both lie inside the region and `len`
                        // fits both (checked). Distinct frames do not overlap.
                        unsafe { ptr::copy_nonoverlapping(src, dst.add(self.tx_off), len) };
                        true
                    }
                    _ => false,
                };
                // A packet that cannot be copied goes out as a runt, which
                // the kernel drops (PACKET_LOSS).
                let len = if copied { ts.len } else { 0 };
                tx.v.set_own(k, len, ts.flags, self.tx_off as u64);
            }
        }
        v.set_own(j, 0, 0, 0);
    }

    fn txsync(&self, fd: BorrowedFd<'_>, tx: &TxState) -> io::Result<bool> {
        let v = &tx.v;
        let hwcur = tx.hwcur.get();
        let tail = prev(tx.pending.get(), v.n);
        let (head, _) = v.shared().head_cur();
        if head >= v.n || !within(head, hwcur, tail) {
            v.shared().reset(hwcur, tail);
            return Err(errno(libc::EINVAL));
        }
        let mut failure = None;
        let mut s = hwcur;
        let mut submitted = false;
        while s != head {
            let Some((e, n)) = packet_end(v, s, head) else {
                // Not published whole yet: send it at a later sync.
                break;
            };
            let first = v.shared().load(s);
            let len = if n == 1 && first.buf_idx == v.first + s && first.ptr == self.tx_off as u64 {
                Some(first.len as usize).filter(|&l| self.tx_off + l <= self.frame)
            } else {
                self.gather(v, s, e)
            };
            match len {
                Some(len) => {
                    self.frame_header(v, s, len);
                    v.status(s).store(TP_STATUS_SEND_REQUEST, Ordering::Release);
                    tx.unsent.set(Some(s));
                    submitted = true;
                }
                None => failure = Some(errno(libc::EMSGSIZE)),
            }
            s = next(e, v.n);
        }
        tx.hwcur.set(s);
        let kick = submitted
            || tx
                .unsent
                .get()
                .is_some_and(|k| v.status(k).load(Ordering::Acquire) == TP_STATUS_SEND_REQUEST);
        if kick {
            if let Err(e) = kick_tx(fd) {
                failure.get_or_insert(e);
            }
        }
        if let Err(e) = reclaim(tx, s) {
            failure.get_or_insert(e);
        }
        let tail = prev(tx.pending.get(), v.n);
        v.shared().set_tail(tail);
        match failure {
            Some(e) => Err(e),
            None => Ok(head != tail),
        }
    }

    /// Writes TX frame `s`'s header for a packet of `len` bytes: `tp_len`,
    /// and the virtio header if the socket has one (no offloads; `hdr_len`:
    /// the bytes to copy into the skb).
    fn frame_header(&self, v: &RingView, s: u32, len: usize) {
        let f = v.frame(s);
        // SAFETY: TX frame `s` is not handed to the kernel (its status is
        // AVAILABLE), so these writes race with nothing; they come before
        // the status store (Release) that hands the frame over. The virtio
        // header lies in `[TX_BASE, tx_off)`, inside the frame.
        unsafe {
            match self.linear_max {
                Some(max) => {
                    ptr::addr_of_mut!((*f.cast::<Tpacket2Hdr>()).tp_len).write((len + VNET_HDR) as u32);
                    let h = f.add(TX_BASE);
                    ptr::write_bytes(h, 0, VNET_HDR);
                    // Legacy virtio headers are in the host's byte order.
                    let copy = if len <= max { len as u16 } else { 0 };
                    ptr::copy_nonoverlapping(copy.to_ne_bytes().as_ptr(), h.add(2), 2);
                }
                None => ptr::addr_of_mut!((*f.cast::<Tpacket2Hdr>()).tp_len).write(len as u32),
            }
        }
    }

    /// Copies the packet of TX slots `s..=e` into frame `s` at the TX data
    /// offset and gives every slot its own frame back; returns the packet's
    /// length, or `None` if it does not fit one frame or a slot is corrupt
    /// (the packet is dropped).
    fn gather(&self, v: &RingView, s: u32, e: u32) -> Option<usize> {
        let dst = v.frame(s);
        let cap = self.frame - self.tx_off;
        let mut total = 0usize;
        let mut ok = true;
        let mut k = s;
        loop {
            let sl = v.shared().load(k);
            let off = (sl.ptr as usize) & (self.frame - 1);
            let len = sl.len as usize;
            match self.buf(sl.buf_idx, off) {
                Some((src, room)) if ok && len <= room && total + len <= cap => {
                    // SAFETY: the source is a frame of this port that user
                    // space owns (a TX frame not yet handed over, or an RX
                    // frame the user holds), `len` bytes inside it; the
                    // destination is TX frame `s` (not handed over), `total +
                    // len <= cap` bytes past tx_off. `ptr::copy` allows the
                    // ranges to overlap (a packet moving inside frame `s`).
                    unsafe { ptr::copy(src, dst.add(self.tx_off + total), len) };
                    total += len;
                }
                _ => ok = false,
            }
            v.set_own(k, sl.len, 0, self.tx_off as u64);
            if k == e {
                break;
            }
            k = next(k, v.n);
        }
        ok.then_some(total)
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
                SyncDir::Rx => s.rx.as_ref().map(|r| self.rxsync(r)),
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
}

/// `poll(2)` on a socket backend's port (AF_PACKET, AF_XDP), as netmap's
/// handler does: sync the rings of the directions `events` asks for (TX
/// too when `txpoll`) with `sync` (which answers the direction's `want`
/// bits when a ring is ready, `POLLERR` on failure); if none is ready,
/// `arm` the sockets in a private epoll set, look once more, then `wait`
/// on it (until an event, or the deadline it is given; `true`: a socket
/// reported an error) and look again, until `deadline`; disarm at the end.
pub(crate) fn poll_rings(
    events: i16,
    deadline: Deadline,
    txpoll: bool,
    mut sync: impl FnMut(SyncDir, i16) -> i16,
    mut arm: impl FnMut(c_int) -> io::Result<()>,
    mut wait: impl FnMut(Deadline) -> io::Result<bool>,
) -> io::Result<i16> {
    let want_tx = events & (libc::POLLOUT | libc::POLLWRNORM);
    let want_rx = events & (libc::POLLIN | libc::POLLRDNORM);
    let mut armed = false;
    let result = loop {
        let mut revents = 0;
        if txpoll || want_tx != 0 {
            revents |= sync(SyncDir::Tx, want_tx);
        }
        if want_rx != 0 {
            revents |= sync(SyncDir::Rx, want_rx);
        }
        if revents != 0 {
            break Ok(revents);
        }
        if !armed {
            // From here on every new frame or completion is an event;
            // look at the rings once more, then sleep.
            armed = true;
            if let Err(e) = arm(libc::EPOLL_CTL_ADD) {
                break Err(e);
            }
            continue;
        }
        if deadline.passed() {
            break Ok(0);
        }
        match wait(deadline) {
            Ok(true) => break Ok(libc::POLLERR),
            Ok(false) => {}
            Err(e) => break Err(e),
        }
    };
    if armed {
        let _ = arm(libc::EPOLL_CTL_DEL);
    }
    result
}

/// The last slot and the slot count of the TX packet that starts at slot
/// `s` (a `NS_MOREFRAG` chain), or `None` if the chain reaches `head`: the
/// user has not published it whole yet.
fn packet_end(v: &RingView, s: u32, head: u32) -> Option<(u32, u32)> {
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
    Some((e, n))
}

/// Takes back the TX frames the kernel completed, in order, up to `upto`
/// (the first slot not handed over); `EINVAL` if one of them was refused
/// as malformed.
fn reclaim(tx: &TxState, upto: u32) -> io::Result<()> {
    let v = &tx.v;
    let mut result = Ok(());
    let mut p = tx.pending.get();
    while p != upto {
        let st = v.status(p).load(Ordering::Acquire);
        if st & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING) != 0 {
            break;
        }
        if st & TP_STATUS_WRONG_FORMAT != 0 {
            v.status(p).store(TP_STATUS_AVAILABLE, Ordering::Relaxed);
            result = Err(errno(libc::EINVAL));
        }
        if tx.unsent.get() == Some(p) {
            tx.unsent.set(None);
        }
        p = next(p, v.n);
    }
    tx.pending.set(p);
    result
}

/// Where RX frame `t`'s packet starts and how long it is; puts back a VLAN
/// tag the kernel stripped, so the slot holds the frame as it was on the
/// wire.
fn rx_packet(v: &RingView, t: u32, status: u32, h: &Tpacket2Hdr) -> (usize, u16) {
    let frame = v.frame;
    let mac = (h.tp_mac as usize).clamp(TPACKET2_HDRLEN, frame - 1);
    let mut len = (h.tp_snaplen as usize).min(frame - mac);
    let mut off = mac;
    if status & TP_STATUS_VLAN_VALID != 0 && len >= 12 && mac >= TPACKET2_HDRLEN + 4 {
        let tpid = if status & TP_STATUS_VLAN_TPID_VALID != 0 && h.tp_vlan_tpid != 0 {
            h.tp_vlan_tpid
        } else {
            0x8100
        };
        let p = v.frame(t);
        // SAFETY: the frame has TP_STATUS_USER (the caller checked), so the
        // kernel does not touch it; `mac - 4 >= TPACKET2_HDRLEN`, so the
        // move stays between the header and the frame's end, and `ptr::copy`
        // allows the overlap.
        unsafe {
            ptr::copy(p.add(mac), p.add(mac - 4), 12);
            ptr::copy_nonoverlapping(tpid.to_be_bytes().as_ptr(), p.add(mac + 8), 2);
            ptr::copy_nonoverlapping(h.tp_vlan_tci.to_be_bytes().as_ptr(), p.add(mac + 10), 2);
        }
        off = mac - 4;
        len = (len + 4).min(frame - off);
    }
    (off, len.min(u16::MAX as usize) as u16)
}

impl PortFd for AfPacketFd {
    fn max_packet(&self) -> Option<usize> {
        self.port.as_ref().map(|p| p.max_len)
    }

    fn sync(&self, dir: SyncDir) -> io::Result<()> {
        let port = self.port.as_ref().ok_or_else(|| errno(libc::ENXIO))?;
        port.sync_all(dir).map(drop)
    }

    fn poll(&self, events: i16, deadline: Deadline) -> io::Result<i16> {
        let Some(port) = self.port.as_ref() else {
            return Ok(libc::POLLERR);
        };
        poll_rings(
            events,
            deadline,
            port.txpoll,
            |dir, want| port.poll_sync(dir, want),
            |op| self.arm(port, op),
            |d| self.wait(port, d),
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

impl AfPacketFd {
    /// Registers (or removes) every socket in the private epoll set.
    fn arm(&self, port: &Port, op: c_int) -> io::Result<()> {
        epoll_arm(self.waiter.as_fd(), op, port.socks.iter().map(|s| s.fd.as_fd()))
    }

    /// Sleeps on the private set until an event or `deadline`; returns
    /// whether some socket reported an error (read and cleared).
    fn wait(&self, port: &Port, deadline: Deadline) -> io::Result<bool> {
        let errored = epoll_errors(self.waiter.as_fd(), deadline)?;
        Ok(port
            .socks
            .iter()
            .filter(|s| errored.contains(&(s.fd.as_raw_fd() as u64)))
            .any(|s| getsockopt_int(s.fd.as_fd(), libc::SOL_SOCKET, libc::SO_ERROR).unwrap_or(0) != 0))
    }
}
