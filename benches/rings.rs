//! Packets per second and nanoseconds per packet for send, recv and forward
//! through the embedded kernel, next to a raw-pointer loop doing the same
//! work on the same ring memory, the way a C netmap program would.
//!
//! `cargo bench --bench rings` (add `-- --packets N --runs R` to change the
//! workload). Each run times only the per-packet loop (the code the safe API
//! replaces); the syncs around it are the same for both and are reported
//! separately as whole-cycle rates. Runs of the two variants alternate, and
//! the medians are compared. `reuse` sends like C's pkt-gen, copying the
//! packet only into buffers that may not hold it yet.

use std::hint::black_box;
use std::ptr::{addr_of, addr_of_mut};
use std::time::{Duration, Instant};

use netmap_rs::ffi::{self, netmap_ring, netmap_slot, nm_next, NS_BUF_CHANGED};
use netmap_rs::prelude::*;
use netmap_test_support::bench::Opts;

const BATCH: usize = 256;
const SLOTS: u32 = 1024;
const LEN: usize = 60;

fn opts() -> Opts {
    Opts::from_args(Opts {
        packets: 4_000_000,
        runs: 7,
    })
}

/// The ring `index` of `port` (TX or RX) as a raw pointer.
fn raw_ring(port: &Netmap, tx: bool) -> *mut netmap_ring {
    let nifp = port.raw_if().as_ptr();
    // SAFETY: the port is open and binds ring 0 in both directions.
    unsafe {
        if tx {
            ffi::NETMAP_TXRING(nifp, 0)
        } else {
            ffi::NETMAP_RXRING(nifp, 0)
        }
    }
}

/// Raw: the slot array of `ring`.
unsafe fn slots(ring: *mut netmap_ring) -> *mut netmap_slot {
    // SAFETY: the slot array follows the ring header.
    unsafe { addr_of_mut!((*ring).slot).cast::<netmap_slot>() }
}

/// Raw: volatile reads and writes of head/cur/tail, as C code does with
/// the fields it shares with the kernel.
unsafe fn rd(p: *const u32) -> u32 {
    // SAFETY: caller passes a field of a live ring.
    unsafe { p.read_volatile() }
}

unsafe fn set_head(ring: *mut netmap_ring, head: u32) {
    // SAFETY: caller owns the ring's user side.
    unsafe {
        addr_of_mut!((*ring).cur).write_volatile(head);
        addr_of_mut!((*ring).head).write_volatile(head);
    }
}

/// Raw: releases everything received on `ring` (untimed helper).
unsafe fn raw_drain(port: &Netmap, ring: *mut netmap_ring) {
    port.rxsync().unwrap();
    // SAFETY: no ring handle of `port` is alive; we own the user side.
    unsafe { set_head(ring, rd(addr_of!((*ring).tail))) };
    port.rxsync().unwrap();
}

/// Raw: stages up to `n` packets of `pkt` on `ring`; returns how many.
#[inline(never)]
unsafe fn raw_send(ring: *mut netmap_ring, pkt: &[u8], n: usize) -> usize {
    // SAFETY: no ring handle is alive on this ring; slots in [head, tail)
    // belong to us; buffers come from the kernel-given indices.
    unsafe {
        let num = rd(addr_of!((*ring).num_slots));
        let tail = rd(addr_of!((*ring).tail));
        let mut head = rd(addr_of!((*ring).head));
        let s = slots(ring);
        let mut sent = 0;
        while sent < n && head != tail {
            let slot = s.add(head as usize);
            let buf = ffi::NETMAP_BUF(ring, (*slot).buf_idx);
            std::ptr::copy_nonoverlapping(pkt.as_ptr(), buf, pkt.len());
            (*slot).len = pkt.len() as u16;
            (*slot).flags = 0;
            head = nm_next(head, num);
            sent += 1;
        }
        set_head(ring, head);
        sent
    }
}

/// Raw: stages up to `n` packets of `pkt` on `ring`, copying it only into
/// slots flagged `NS_BUF_CHANGED` (all of them at start), as C's pkt-gen.
#[inline(never)]
unsafe fn raw_send_reuse(ring: *mut netmap_ring, pkt: &[u8], n: usize) -> usize {
    // SAFETY: as for raw_send.
    unsafe {
        let num = rd(addr_of!((*ring).num_slots));
        let tail = rd(addr_of!((*ring).tail));
        let mut head = rd(addr_of!((*ring).head));
        let s = slots(ring);
        let mut sent = 0;
        while sent < n && head != tail {
            let slot = s.add(head as usize);
            if (*slot).flags & NS_BUF_CHANGED != 0 {
                let buf = ffi::NETMAP_BUF(ring, (*slot).buf_idx);
                std::ptr::copy_nonoverlapping(pkt.as_ptr(), buf, pkt.len());
            }
            (*slot).len = pkt.len() as u16;
            (*slot).flags = 0;
            head = nm_next(head, num);
            sent += 1;
        }
        set_head(ring, head);
        sent
    }
}

/// Raw: flags every slot of `ring` `NS_BUF_CHANGED`, as pkt-gen does at
/// start (untimed helper).
unsafe fn raw_flag_all(ring: *mut netmap_ring) {
    // SAFETY: no ring handle is alive on this ring; at start every slot but
    // the kernel's one is the user's, and the kernel's is not read.
    unsafe {
        let s = slots(ring);
        for i in 0..rd(addr_of!((*ring).num_slots)) as usize {
            (*s.add(i)).flags = NS_BUF_CHANGED;
        }
    }
}

/// Raw: reads every received packet on `ring` (sums a byte of each).
#[inline(never)]
unsafe fn raw_recv(ring: *mut netmap_ring) -> (usize, u64) {
    // SAFETY: as for raw_send, on the RX side.
    unsafe {
        let num = rd(addr_of!((*ring).num_slots));
        let tail = rd(addr_of!((*ring).tail));
        let mut head = rd(addr_of!((*ring).head));
        let s = slots(ring);
        let (mut n, mut sum) = (0, 0u64);
        while head != tail {
            let slot = s.add(head as usize);
            if (*slot).flags & ffi::NS_MOREFRAG != 0 {
                // A complete loop would assemble multi-slot packets here;
                // the benchmark sends none.
                sum += 1;
            }
            let buf = ffi::NETMAP_BUF(ring, (*slot).buf_idx);
            let data = std::slice::from_raw_parts(buf, (*slot).len as usize);
            sum += data[LEN / 2] as u64 + data.len() as u64;
            head = nm_next(head, num);
            n += 1;
        }
        set_head(ring, head);
        (n, sum)
    }
}

/// Raw: swaps every received buffer on `rx` into `tx`.
#[inline(never)]
unsafe fn raw_forward(rx: *mut netmap_ring, tx: *mut netmap_ring) -> usize {
    // SAFETY: as above; both rings live in one memory region.
    unsafe {
        let rn = rd(addr_of!((*rx).num_slots));
        let tn = rd(addr_of!((*tx).num_slots));
        let rtail = rd(addr_of!((*rx).tail));
        let ttail = rd(addr_of!((*tx).tail));
        let mut rh = rd(addr_of!((*rx).head));
        let mut th = rd(addr_of!((*tx).head));
        let (rs, ts) = (slots(rx), slots(tx));
        let mut n = 0;
        while rh != rtail && th != ttail {
            let r = rs.add(rh as usize);
            let t = ts.add(th as usize);
            let idx = (*t).buf_idx;
            (*t).buf_idx = (*r).buf_idx;
            (*t).len = (*r).len;
            (*t).flags = NS_BUF_CHANGED | ((*r).flags & ffi::NS_MOREFRAG);
            (*r).buf_idx = idx;
            (*r).flags = NS_BUF_CHANGED;
            rh = nm_next(rh, rn);
            th = nm_next(th, tn);
            n += 1;
        }
        set_head(rx, rh);
        set_head(tx, th);
        n
    }
}

/// Safe: stages up to `n` packets of `pkt`; returns how many.
#[inline(never)]
fn safe_send(tx: &mut TxRing<'_>, pkt: &[u8], n: usize) -> usize {
    let mut sent = 0;
    while sent < n && tx.send(pkt).is_ok() {
        sent += 1;
    }
    sent
}

/// Safe: stages up to `n` packets of `pkt`, copying it only into fresh
/// buffers ([`TxBatch::push_reuse`]); returns how many.
#[inline(never)]
fn safe_send_reuse(tx: &mut TxRing<'_>, pkt: &[u8], n: usize) -> usize {
    let mut batch = tx.batch();
    while batch.len() < n {
        let Ok((buf, fresh)) = batch.push_reuse(pkt.len()) else {
            break;
        };
        if fresh {
            buf.copy_from_slice(pkt);
        }
    }
    batch.commit()
}

/// Safe: reads every received packet (sums a byte of each).
#[inline(never)]
fn safe_recv(rx: &mut RxRing<'_>) -> (usize, u64) {
    let (mut n, mut sum) = (0, 0u64);
    for f in rx.iter() {
        sum += f.payload()[LEN / 2] as u64 + f.len() as u64;
        n += 1;
    }
    (n, sum)
}

/// Safe: forwards every received packet, one frame at a time.
#[inline(never)]
fn safe_forward_each(rx: &mut RxRing<'_>, tx: &mut TxRing<'_>) -> usize {
    let mut n = 0;
    while tx.space() > 0 {
        let Some(f) = rx.recv() else { break };
        if tx.forward(f).is_err() {
            break;
        }
        n += 1;
    }
    n
}

/// Safe: forwards every received packet as one batch.
#[inline(never)]
fn safe_forward_batch(rx: &mut RxRing<'_>, tx: &mut TxRing<'_>) -> usize {
    tx.forward_from(rx).unwrap_or(0)
}

struct Sample {
    loop_time: Duration,
    total_time: Duration,
    packets: usize,
}

impl Sample {
    fn ns_per_packet(&self) -> f64 {
        self.loop_time.as_nanos() as f64 / self.packets as f64
    }
    fn cycle_mpps(&self) -> f64 {
        self.packets as f64 / self.total_time.as_secs_f64() / 1e6
    }
}

fn pipe(name: &str, id: u32) -> (Netmap, Netmap) {
    let a = NetmapBuilder::new(&format!("emu:{name}{{{id}"))
        .num_slots(SLOTS)
        .build()
        .expect("open master");
    let b = NetmapBuilder::new(&format!("emu:{name}}}{id}"))
        .build()
        .expect("open slave");
    (a, b)
}

fn bench_send(a: &Netmap, b: &Netmap, packets: usize, safe: bool, reuse: bool) -> Sample {
    let pkt = [0x5au8; LEN];
    let txr = raw_ring(a, true);
    let rxr = raw_ring(b, false);
    let mut loop_time = Duration::ZERO;
    let start = Instant::now();
    let mut done = 0;
    if safe {
        let mut tx = a.tx_ring(0).unwrap();
        while done < packets {
            let t = Instant::now();
            let n = if reuse {
                safe_send_reuse(&mut tx, black_box(&pkt), BATCH)
            } else {
                safe_send(&mut tx, black_box(&pkt), BATCH)
            };
            loop_time += t.elapsed();
            done += n;
            tx.sync().unwrap();
            // SAFETY: no handle of `b` is alive.
            unsafe { raw_drain(b, rxr) };
            tx.sync().unwrap();
        }
    } else {
        if reuse {
            // SAFETY: no handle of `a` is alive.
            unsafe { raw_flag_all(txr) };
        }
        while done < packets {
            let t = Instant::now();
            // SAFETY: no handle of `a` is alive.
            let n = unsafe {
                if reuse {
                    raw_send_reuse(txr, black_box(&pkt), BATCH)
                } else {
                    raw_send(txr, black_box(&pkt), BATCH)
                }
            };
            loop_time += t.elapsed();
            done += n;
            a.txsync().unwrap();
            // SAFETY: no handle of `b` is alive.
            unsafe { raw_drain(b, rxr) };
            a.txsync().unwrap();
        }
    }
    Sample {
        loop_time,
        total_time: start.elapsed(),
        packets: done,
    }
}

fn bench_recv(a: &Netmap, b: &Netmap, packets: usize, safe: bool) -> Sample {
    let pkt = [0x5au8; LEN];
    let txr = raw_ring(a, true);
    let rxr = raw_ring(b, false);
    let mut loop_time = Duration::ZERO;
    let mut sum = 0u64;
    let start = Instant::now();
    let mut done = 0;
    let mut rx = if safe { Some(b.rx_ring(0).unwrap()) } else { None };
    while done < packets {
        // SAFETY: no handle of `a` is alive.
        unsafe { raw_send(txr, &pkt, BATCH) };
        a.txsync().unwrap();
        let t;
        let n;
        match rx.as_mut() {
            Some(rx) => {
                rx.sync().unwrap();
                t = Instant::now();
                let (k, s) = safe_recv(rx);
                sum += s;
                n = k;
            }
            None => {
                b.rxsync().unwrap();
                t = Instant::now();
                // SAFETY: no handle of `b` is alive.
                n = unsafe { raw_recv(rxr) }.0;
            }
        }
        loop_time += t.elapsed();
        done += n;
    }
    drop(rx);
    b.rxsync().unwrap();
    black_box(sum);
    Sample {
        loop_time,
        total_time: start.elapsed(),
        packets: done,
    }
}

#[allow(clippy::too_many_arguments)]
fn bench_forward(
    src: &Netmap,
    mid_in: &Netmap,
    mid_out: &Netmap,
    dst: &Netmap,
    packets: usize,
    safe: bool,
    batch: bool,
) -> Sample {
    let pkt = [0x5au8; LEN];
    let src_tx = raw_ring(src, true);
    let in_rx = raw_ring(mid_in, false);
    let out_tx = raw_ring(mid_out, true);
    let dst_rx = raw_ring(dst, false);
    let mut loop_time = Duration::ZERO;
    let start = Instant::now();
    let mut done = 0;
    let mut rings = if safe {
        Some((mid_in.rx_ring(0).unwrap(), mid_out.tx_ring(0).unwrap()))
    } else {
        None
    };
    while done < packets {
        // SAFETY: no handle of `src` is alive.
        unsafe { raw_send(src_tx, &pkt, BATCH) };
        src.txsync().unwrap();
        let t;
        let n;
        match rings.as_mut() {
            Some((rx, tx)) => {
                rx.sync().unwrap();
                t = Instant::now();
                n = if batch {
                    safe_forward_batch(rx, tx)
                } else {
                    safe_forward_each(rx, tx)
                };
                loop_time += t.elapsed();
                tx.sync().unwrap();
            }
            None => {
                mid_in.rxsync().unwrap();
                t = Instant::now();
                // SAFETY: no handles of the middle ports are alive.
                n = unsafe { raw_forward(in_rx, out_tx) };
                loop_time += t.elapsed();
                mid_out.txsync().unwrap();
            }
        }
        done += n;
        // SAFETY: no handle of `dst` is alive.
        unsafe { raw_drain(dst, dst_rx) };
        mid_out.txsync().unwrap();
    }
    drop(rings);
    mid_in.rxsync().unwrap();
    Sample {
        loop_time,
        total_time: start.elapsed(),
        packets: done,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn report(name: &str, runs: usize, mut f: impl FnMut(bool) -> Sample) {
    let (mut safe_ns, mut raw_ns, mut safe_mpps, mut raw_mpps) = (vec![], vec![], vec![], vec![]);
    f(true);
    f(false); // warm up both
    for _ in 0..runs {
        let s = f(true);
        safe_ns.push(s.ns_per_packet());
        safe_mpps.push(s.cycle_mpps());
        let r = f(false);
        raw_ns.push(r.ns_per_packet());
        raw_mpps.push(r.cycle_mpps());
    }
    let (s, r) = (median(safe_ns), median(raw_ns));
    println!(
        "{name:<8} safe {s:6.2} ns/pkt ({:7.1} Mpps loop, {:5.1} Mpps with syncs)   raw {r:6.2} ns/pkt ({:7.1} Mpps loop, {:5.1} Mpps with syncs)   safe/raw {:.3}",
        1e3 / s,
        median(safe_mpps),
        1e3 / r,
        median(raw_mpps),
        s / r
    );
}

fn main() {
    let o = opts();
    println!(
        "netmap-rs ring benchmark: embedded kernel, {SLOTS}-slot rings, {LEN}-byte packets, batches of {BATCH}, {} packets x {} runs (medians)",
        o.packets, o.runs
    );
    let (a, b) = pipe("bench", 1);
    report("send", o.runs, |safe| bench_send(&a, &b, o.packets, safe, false));
    report("reuse", o.runs, |safe| bench_send(&a, &b, o.packets, safe, true));
    report("recv", o.runs, |safe| bench_recv(&a, &b, o.packets, safe));
    let (c, d) = pipe("bench", 2);
    report("forward", o.runs, |safe| {
        bench_forward(&a, &b, &c, &d, o.packets, safe, true)
    });
    report("fwd-each", o.runs, |safe| {
        bench_forward(&a, &b, &c, &d, o.packets, safe, false)
    });
}
