//! The VALE learning switch of a region: `emu:valeX:PORT` names ports of
//! switch `valeX`, whose region they share.
//!
//! As in the module (`netmap_bdg_learning`), a TX sync of a port forwards
//! each packet the user released by its destination MAC address: a learned
//! unicast address goes to the port it was last seen from, broadcast,
//! multicast and unknown addresses flood to every other port; the source
//! address is learned for the sending port. The packet is copied into the
//! destination's RX ring (ring `i` of the sender goes to ring `i` modulo the
//! destination's ring count); a destination without room for the whole
//! packet misses it, as the module drops when a ring is full. The TX slots
//! are free again as soon as the sync returns. Multi-slot packets
//! (`NS_MOREFRAG`) travel whole, or not at all; a packet the user has not
//! finished (the last slot before `head` still chained) waits for the next
//! sync.
//!
//! The address table lives in the region's control part (`macs`), a small
//! open-addressed table whose entries name a port by record slot and
//! generation, so an entry of a port that has gone is ignored.

use std::ptr;

use super::notify;
use super::pipe::{Dir, Kind, Pipe};
use super::region::{m, p, MAX_MACS};
use super::registry::End;
use super::shm::Guard;
use super::BUF_SIZE;
use crate::backend::kring::Slot;
use crate::backend::nm_prev as prev;
use crate::ffi::nm_next as next;
use crate::ffi::NS_MOREFRAG;

/// Entries looked at for one address before the table counts as full there.
const PROBES: u32 = 8;
/// Bytes of an Ethernet header: a shorter packet has no addresses to go by.
const ETH_HLEN: usize = 14;

/// A six-byte address as the table's two words.
fn mac_words(mac: [u8; 6]) -> (u32, u32) {
    (
        u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
        u32::from(u16::from_le_bytes([mac[4], mac[5]])) | m::VALID,
    )
}

/// Where the probe sequence of `mac` starts.
fn home(mac: [u8; 6]) -> u32 {
    // FNV-1a.
    let mut h: u32 = 0x811c_9dc5;
    for b in mac {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h % MAX_MACS
}

/// The port (record slot) `mac` was last seen from, if that port is still
/// the one the entry named.
fn lookup(pipe: &Pipe, mac: [u8; 6]) -> Option<u32> {
    let region = &pipe.region;
    let (lo, hi) = mac_words(mac);
    let start = home(mac);
    (0..PROBES).find_map(|i| {
        let e = region.mac((start + i) % MAX_MACS);
        if e.get(m::LO) != lo || e.get(m::HI) != hi {
            return None;
        }
        let port = e.get(m::PORT);
        let r = region.pipe_rec(port.min(super::region::MAX_PIPES - 1));
        (port < super::region::MAX_PIPES
            && r.get(p::STATE) == super::region::LIVE
            && r.get(p::KIND) == Kind::Vale as u32
            && r.get(p::GEN) == e.get(m::PORT_GEN))
        .then_some(port)
    })
}

/// Learns that `mac` is behind port `pipe`.
fn learn(pipe: &Pipe, mac: [u8; 6]) {
    let region = &pipe.region;
    let (lo, hi) = mac_words(mac);
    let start = home(mac);
    let gen = region.pipe_rec(pipe.slot).get(p::GEN);
    // The entry of this address if there is one, else the first entry that
    // is empty or names a port that has gone, else the home entry.
    let at = (0..PROBES)
        .map(|i| (start + i) % MAX_MACS)
        .find(|&i| {
            let e = region.mac(i);
            e.get(m::LO) == lo && e.get(m::HI) == hi
        })
        .or_else(|| {
            (0..PROBES).map(|i| (start + i) % MAX_MACS).find(|&i| {
                let e = region.mac(i);
                let port = e.get(m::PORT);
                e.get(m::HI) & m::VALID == 0
                    || port >= super::region::MAX_PIPES
                    || region.pipe_rec(port).get(p::GEN) != e.get(m::PORT_GEN)
                    || region.pipe_rec(port).get(p::STATE) != super::region::LIVE
            })
        })
        .unwrap_or(start);
    let e = region.mac(at);
    e.set(m::LO, lo);
    e.set(m::HI, hi);
    e.set(m::PORT, pipe.slot);
    e.set(m::PORT_GEN, gen);
}

/// Copies packet `frags` (slots of a TX ring, their buffers checked) into
/// RX ring `r` of port `dst` if it has room for all of them: `true` if
/// delivered.
fn deliver(dst: &Pipe, r: u32, frags: &[(Slot, *mut u8)]) -> bool {
    let k = dst.kidx(End::Master, Dir::Rx, r);
    let Some(kr) = dst.checked_kr(k) else {
        return false;
    };
    let n = dst.nslots;
    // The switch fills from `pipe_tail` up to the slot before the user's
    // first held one.
    let room = (kr.hwcur + n - 1 - kr.pipe_tail) % n;
    if frags.len() > room as usize {
        return false;
    }
    let ring = dst.ring(k);
    let mut t = kr.pipe_tail;
    for (i, &(s, src)) in frags.iter().enumerate() {
        let d = ring.load(t);
        let len = match dst.region.buf(d.buf_idx) {
            Some(to) => {
                let len = usize::from(s.len).min(BUF_SIZE);
                // SAFETY: both are buffers of the region, `BUF_SIZE` long:
                // the source is held by the kernel during this sync (the
                // sender released it), the destination is free room of an
                // RX ring, also the kernel's; `copy` allows them to be one
                // buffer, which only a forged slot makes.
                unsafe { ptr::copy(src, to, len) };
                len as u16
            }
            None => 0,
        };
        let more = if i + 1 < frags.len() { NS_MOREFRAG } else { 0 };
        ring.store(
            t,
            Slot {
                buf_idx: d.buf_idx,
                len,
                flags: more,
                ptr: 0,
            },
        );
        t = next(t, n);
    }
    dst.set_pipe_tail(k, t);
    dst.notify(k, notify::readable);
    true
}

/// `NIOCTXSYNC` on TX kring `k` of VALE port `pipe`: forwards the released
/// packets; `false` on a prologue violation.
pub(super) fn txsync(pipe: &Pipe, g: &Guard<'_>, k: usize) -> bool {
    let Some((head, mut kr)) = pipe.prologue(k) else {
        return false;
    };
    let n = pipe.nslots;
    let (_, _, id) = pipe.decompose(k);
    let region = &pipe.region;
    let ports: Vec<Pipe> = region
        .live_pipes()
        .filter(|&s| s != pipe.slot && region.pipe_rec(s).get(p::KIND) == Kind::Vale as u32)
        .filter_map(|s| Pipe::view(region, g, s))
        .collect();
    let ring = pipe.ring(k);
    let mut j = kr.hwcur;
    let mut frags = Vec::new();
    let mut delivered = false;
    'packets: while j != head {
        let start = j;
        frags.clear();
        let mut ok = true;
        loop {
            let s = ring.load(j);
            match region.buf(s.buf_idx) {
                Some(b) if usize::from(s.len) <= BUF_SIZE => frags.push((s, b)),
                _ => ok = false,
            }
            j = next(j, n);
            if s.flags & NS_MOREFRAG == 0 {
                break;
            }
            if j == head {
                // Unfinished: it goes at the next sync.
                j = start;
                break 'packets;
            }
        }
        if !ok || frags.is_empty() || usize::from(frags[0].0.len) < ETH_HLEN {
            continue;
        }
        let mut hdr = [0u8; 12];
        // SAFETY: the first fragment's buffer is in the region and holds at
        // least `ETH_HLEN` bytes of packet; the kernel holds it for the sync.
        unsafe { ptr::copy_nonoverlapping(frags[0].1, hdr.as_mut_ptr(), 12) };
        let dst: [u8; 6] = hdr[..6].try_into().expect("six bytes");
        let src: [u8; 6] = hdr[6..].try_into().expect("six bytes");
        if src[0] & 1 == 0 {
            learn(pipe, src);
        }
        let to = if dst[0] & 1 == 0 { lookup(pipe, dst) } else { None };
        for port in &ports {
            if to.is_none_or(|t| t == port.slot) {
                delivered |= deliver(port, id % port.nrings, &frags);
            }
        }
    }
    // Everything up to `j` is done with: its slots are free again.
    kr.hwcur = j;
    kr.hwtail = prev(j, n);
    kr.pipe_tail = kr.hwtail;
    pipe.set_kr(k, kr);
    ring.set_tail(kr.hwtail);
    if delivered {
        pipe.wake(g);
    }
    true
}

/// `NIOCRXSYNC` on RX kring `k` of VALE port `pipe`: takes the packets the
/// switch delivered and gives the switch the slots the user released.
pub(super) fn rxsync(pipe: &Pipe, _g: &Guard<'_>, k: usize) -> bool {
    let Some((head, mut kr)) = pipe.prologue(k) else {
        return false;
    };
    kr.hwtail = kr.pipe_tail;
    kr.hwcur = head;
    pipe.set_kr(k, kr);
    let ring = pipe.ring(k);
    ring.stamp();
    ring.set_tail(kr.hwtail);
    true
}
