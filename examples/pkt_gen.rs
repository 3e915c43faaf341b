//! A packet generator and sink in the manner of netmap's `pkt-gen`, on any
//! port: netmap, embedded (`emu:`) or AF_PACKET.
//!
//! ```text
//! pkt_gen -i PORT -f tx|rx|ping|pong [-l LEN] [-n COUNT] [-R PPS] [-b BATCH]
//!         [-T SECS] [-F FLOWS] [--busy] [--fallback] [--promisc]
//! ```
//!
//! * `tx` sends IPv4/UDP frames of `-l` bytes (default 60) from every TX
//!   ring, built in place in the ring's buffers, `-b` per sync (default
//!   512), spread over `-F` flows (UDP source ports, default 1), at most
//!   `-R` per second (default: as fast as the port goes).
//! * `rx` counts what arrives on every RX ring.
//! * `ping` sends one frame, waits for it to come back and times the round
//!   trip; `pong` (on the other end) sends every frame back.
//! * `rx` and `pong` sleep in `poll` when idle for a while; with `--busy`
//!   they spin on the rings instead (lower latency, one core kept busy).
//!
//! A progress line is printed each second (packets/s, Gbit/s of frame
//! bytes), and a summary at the end: after `-n` packets (default: no limit)
//! or `-T` seconds (default: no limit). `--fallback` lets a netmap name fall
//! back to AF_PACKET where netmap is unavailable; `--promisc` puts an
//! AF_PACKET port's interface in promiscuous mode.
//!
//! ```text
//! cargo run --release --example pkt_gen -- -i emu:gen}1 -f rx &
//! cargo run --release --example pkt_gen -- -i emu:gen{1 -f tx -T 5
//! ```
//! (The embedded kernel's pipes exist only inside one process, so for
//! `emu:` names run both ends in one process: `-f pair`, below.)
//!
//! `-f pair` (for `emu:` and other names that need both ends in one process)
//! opens `-i` and `-o` and runs `tx` on the first and `rx` on the second in
//! two threads.

#[path = "common/open.rs"]
mod common;

use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use netmap_rs::prelude::*;
use netmap_test_support::packets::ipv4_checksum;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Tx,
    Rx,
    Ping,
    Pong,
    Pair,
}

#[derive(Debug, Clone)]
struct Args {
    port: String,
    peer: Option<String>,
    mode: Mode,
    len: usize,
    count: u64,
    rate: u64,
    batch: usize,
    secs: Option<f64>,
    flows: u16,
    fallback: bool,
    promisc: bool,
    busy: bool,
}

const USAGE: &str = "usage: pkt_gen -i PORT -f tx|rx|ping|pong|pair [-o PEER] [-l LEN] [-n COUNT] \
                     [-R PPS] [-b BATCH] [-T SECS] [-F FLOWS] [--busy] [--fallback] [--promisc]";

fn parse_args(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        port: String::new(),
        peer: None,
        mode: Mode::Tx,
        len: 60,
        count: 0,
        rate: 0,
        batch: 512,
        secs: None,
        flows: 1,
        fallback: false,
        promisc: false,
        busy: false,
    };
    let mut mode = None;
    let mut it = args;
    fn num<T: std::str::FromStr>(v: Option<String>, what: &str) -> Result<T, String> {
        let v = v.ok_or_else(|| format!("{what} needs a value"))?;
        v.parse()
            .map_err(|_| format!("{what}: `{v}` is not a valid number"))
    }
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-i" => a.port = it.next().ok_or("-i needs a port name")?,
            "-o" => a.peer = Some(it.next().ok_or("-o needs a port name")?),
            "-f" => {
                mode = Some(match it.next().as_deref() {
                    Some("tx") => Mode::Tx,
                    Some("rx") => Mode::Rx,
                    Some("ping") => Mode::Ping,
                    Some("pong") => Mode::Pong,
                    Some("pair") => Mode::Pair,
                    other => return Err(format!("-f takes tx, rx, ping, pong or pair, not {other:?}")),
                })
            }
            "-l" => a.len = num(it.next(), "-l")?,
            "-n" => a.count = num(it.next(), "-n")?,
            "-R" => a.rate = num(it.next(), "-R")?,
            "-b" => a.batch = num(it.next(), "-b")?,
            "-T" => a.secs = Some(num(it.next(), "-T")?),
            "-F" => a.flows = num(it.next(), "-F")?,
            "--fallback" => a.fallback = true,
            "--promisc" => a.promisc = true,
            "--busy" => a.busy = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    a.mode = mode.ok_or("-f is required")?;
    if a.port.is_empty() {
        return Err("-i is required".into());
    }
    if a.mode == Mode::Pair && a.peer.is_none() {
        return Err("-f pair needs the receiving port as -o".into());
    }
    if !(HEADERS + 8..=9000).contains(&a.len) {
        return Err(format!(
            "-l takes a frame length from {} to 9000 bytes",
            HEADERS + 8
        ));
    }
    if a.batch == 0 || a.flows == 0 {
        return Err("-b and -F take positive numbers".into());
    }
    if a.secs.is_some_and(|s| s.is_nan() || s <= 0.0) {
        return Err("-T takes a positive number of seconds".into());
    }
    Ok(a)
}

/// Ethernet, IPv4 and UDP headers.
const HEADERS: usize = 14 + 20 + 8;

/// An IPv4/UDP frame of `len` bytes from 10.0.0.1 to 10.1.0.1 (broadcast
/// MAC), UDP port 1234 to 4321 + `flow`, the rest filled with a pattern.
fn template(len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (len - 14) as u16;
    let ip = &mut f[14..34];
    ip.copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 1, 0, 1,
    ]);
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    let sum = ipv4_checksum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let udp_len = ip_len - 20;
    f[34..36].copy_from_slice(&1234u16.to_be_bytes());
    f[36..38].copy_from_slice(&4321u16.to_be_bytes());
    f[38..40].copy_from_slice(&udp_len.to_be_bytes());
    for (i, b) in f[HEADERS..].iter_mut().enumerate() {
        *b = i as u8;
    }
    f
}

/// Writes flow `flow`'s source port and sequence number `seq` into a copy of
/// the template. (UDP checksum 0: none.)
fn stamp(buf: &mut [u8], flow: u16, seq: u64) {
    buf[34..36].copy_from_slice(&(1234u16.wrapping_add(flow)).to_be_bytes());
    buf[HEADERS..HEADERS + 8].copy_from_slice(&seq.to_le_bytes());
}

/// Counts and prints once a second.
struct Meter {
    what: &'static str,
    name: String,
    start: Instant,
    last: Instant,
    last_pkts: u64,
    pkts: u64,
    bytes: u64,
    last_bytes: u64,
    /// When the first and the latest packet were counted.
    first_pkt: Option<Instant>,
    last_pkt: Instant,
}

impl Meter {
    fn new(what: &'static str, name: &str) -> Self {
        let now = Instant::now();
        Meter {
            what,
            name: name.to_owned(),
            start: now,
            last: now,
            last_pkts: 0,
            pkts: 0,
            bytes: 0,
            last_bytes: 0,
            first_pkt: None,
            last_pkt: now,
        }
    }

    fn add(&mut self, pkts: u64, bytes: u64) {
        if pkts > 0 {
            let now = Instant::now();
            self.first_pkt.get_or_insert(now);
            self.last_pkt = now;
        }
        self.pkts += pkts;
        self.bytes += bytes;
    }

    fn tick(&mut self) {
        let dt = self.last.elapsed();
        if dt >= Duration::from_secs(1) {
            let s = dt.as_secs_f64();
            let pps = (self.pkts - self.last_pkts) as f64 / s;
            let gbps = (self.bytes - self.last_bytes) as f64 * 8.0 / s / 1e9;
            println!(
                "{} {}: {:>10.0} pps {:>7.3} Gbps ({} total)",
                self.what, self.name, pps, gbps, self.pkts
            );
            self.last = Instant::now();
            self.last_pkts = self.pkts;
            self.last_bytes = self.bytes;
        }
    }

    /// Totals, and rates over the time from the first to the last packet
    /// (a receiver started early or stopped late is not charged the idle
    /// time).
    fn summary(&self) {
        let s = match self.first_pkt {
            Some(first) if self.last_pkt > first => (self.last_pkt - first).as_secs_f64(),
            _ => self.start.elapsed().as_secs_f64(),
        };
        println!(
            "{} {}: {} packets, {} bytes in {:.3} s: {:.0} pps {:.3} Gbps",
            self.what,
            self.name,
            self.pkts,
            self.bytes,
            s,
            self.pkts as f64 / s,
            self.bytes as f64 * 8.0 / s / 1e9
        );
    }
}

/// When to stop.
struct Until {
    count: u64,
    deadline: Option<Instant>,
}

impl Until {
    fn new(a: &Args) -> Self {
        Until {
            count: a.count,
            deadline: a.secs.map(|s| Instant::now() + Duration::from_secs_f64(s)),
        }
    }

    fn done(&self, pkts: u64) -> bool {
        (self.count > 0 && pkts >= self.count) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// How many more packets may go (`u64::MAX`: no count limit).
    fn left(&self, pkts: u64) -> u64 {
        if self.count == 0 {
            u64::MAX
        } else {
            self.count.saturating_sub(pkts)
        }
    }
}

fn tx(port: &Netmap, a: &Args) -> Result<Meter, Error> {
    let mut rings = (0..port.num_tx_rings())
        .map(|i| port.tx_ring(i))
        .collect::<Result<Vec<_>, _>>()?;
    if rings.is_empty() {
        return Err(Error::Unsupported {
            backend: port.backend(),
            what: format!("transmitting on {} (it has no TX rings)", port.name()),
            hint: "open the port without /R".into(),
        });
    }
    let tpl = template(a.len);
    let until = Until::new(a);
    let mut m = Meter::new("tx", port.name());
    let mut seq = 0u64;
    let mut flow = 0u16;
    while !until.done(m.pkts) {
        // Rate limit: how many packets the clock allows now.
        let mut allowed = until.left(m.pkts);
        if a.rate > 0 {
            let due = (m.start.elapsed().as_secs_f64() * a.rate as f64) as u64;
            allowed = allowed.min(due.saturating_sub(m.pkts));
            if allowed == 0 {
                thread::sleep(Duration::from_micros(50));
                m.tick();
                continue;
            }
        }
        let mut sent = 0u64;
        for ring in rings.iter_mut() {
            let want = (a.batch as u64).min(allowed - sent).min(ring.space() as u64);
            let mut batch = ring.batch();
            for _ in 0..want {
                let buf = batch.push(tpl.len())?;
                buf.copy_from_slice(&tpl);
                stamp(buf, flow, seq);
                seq += 1;
                flow = (flow + 1) % a.flows;
            }
            sent += batch.commit() as u64;
            ring.sync()?;
            if sent == allowed {
                break;
            }
        }
        m.add(sent, sent * tpl.len() as u64);
        if sent == 0 {
            port.poll_writable(Some(Duration::from_millis(100)))?;
        }
        m.tick();
    }
    // Let the last packets leave.
    for ring in rings.iter_mut() {
        ring.sync()?;
    }
    Ok(m)
}

fn rx(port: &Netmap, a: &Args) -> Result<Meter, Error> {
    let mut rings = (0..port.num_rx_rings())
        .map(|i| port.rx_ring(i))
        .collect::<Result<Vec<_>, _>>()?;
    if rings.is_empty() {
        return Err(Error::Unsupported {
            backend: port.backend(),
            what: format!("receiving on {} (it has no RX rings)", port.name()),
            hint: "open the port without /T".into(),
        });
    }
    let until = Until::new(a);
    let mut m = Meter::new("rx", port.name());
    let mut idle = 0u32;
    while !until.done(m.pkts) {
        let (mut pkts, mut bytes) = (0u64, 0u64);
        for ring in rings.iter_mut() {
            ring.sync()?;
            for f in ring.iter() {
                pkts += 1;
                bytes += f.len() as u64;
            }
        }
        m.add(pkts, bytes);
        back_off(port, a, &mut idle, pkts)?;
        m.tick();
    }
    Ok(m)
}

fn ping(port: &Netmap, a: &Args) -> Result<Meter, Error> {
    let mut tx = port.tx_ring(0)?;
    let mut rx = port.rx_ring(0)?;
    let mut pkt = template(a.len);
    let until = Until::new(a);
    let mut m = Meter::new("ping", port.name());
    let mut rtts = Vec::new();
    let mut lost = 0u64;
    let mut seq = 0u64;
    while !until.done(m.pkts + lost) {
        stamp(&mut pkt, 0, seq);
        let t0 = Instant::now();
        loop {
            match tx.send(&pkt) {
                Ok(()) => break,
                Err(Error::RingFull { .. }) => {
                    tx.sync()?;
                    port.poll_writable(Some(Duration::from_millis(100)))?;
                }
                Err(e) => return Err(e),
            }
        }
        tx.sync()?;
        let back = loop {
            rx.sync()?;
            let mut hit = false;
            while let Some(f) = rx.recv() {
                let p = f.payload();
                hit |= p.len() >= HEADERS + 8 && p[HEADERS..HEADERS + 8] == seq.to_le_bytes();
            }
            if hit {
                break true;
            }
            if t0.elapsed() > Duration::from_secs(1) {
                break false;
            }
            if t0.elapsed() > Duration::from_micros(200) {
                port.poll(Some(Duration::from_millis(10)))?;
            }
        };
        if back {
            rtts.push(t0.elapsed());
            m.add(1, pkt.len() as u64);
        } else {
            lost += 1;
            println!("ping {}: no reply to {seq} within 1 s", port.name());
        }
        seq += 1;
        if m.last.elapsed() >= Duration::from_secs(1) && !rtts.is_empty() {
            let mut w = rtts[rtts.len().saturating_sub(1000)..].to_vec();
            w.sort_unstable();
            println!(
                "ping {}: {} replies, rtt p50 {:?} min {:?} max {:?}",
                port.name(),
                m.pkts,
                w[w.len() / 2],
                w[0],
                w[w.len() - 1]
            );
            m.last = Instant::now();
        }
    }
    rtts.sort_unstable();
    if let (Some(min), Some(max)) = (rtts.first(), rtts.last()) {
        println!(
            "ping {}: {} replies, {} lost; rtt min {:?} p50 {:?} p99 {:?} max {:?}",
            port.name(),
            rtts.len(),
            lost,
            min,
            rtts[rtts.len() / 2],
            rtts[(rtts.len() * 99 / 100).min(rtts.len() - 1)],
            max
        );
    }
    Ok(m)
}

fn pong(port: &Netmap, a: &Args) -> Result<Meter, Error> {
    let mut tx = port.tx_ring(0)?;
    let mut rx = port.rx_ring(0)?;
    let until = Until::new(a);
    let mut m = Meter::new("pong", port.name());
    let mut idle = 0u32;
    while !until.done(m.pkts) {
        rx.sync()?;
        let mut n = 0u64;
        let mut bytes = 0u64;
        while tx.space() > 0 {
            let Some(f) = rx.recv() else { break };
            tx.send(f.payload())?;
            bytes += f.len() as u64;
            n += 1;
        }
        tx.sync()?;
        m.add(n, bytes);
        back_off(port, a, &mut idle, n)?;
        m.tick();
    }
    Ok(m)
}

/// After a pass that found `got` packets: counts empty passes, and after
/// 1000 in a row sleeps in `poll` instead of spinning (unless `--busy`).
fn back_off(port: &Netmap, a: &Args, idle: &mut u32, got: u64) -> Result<(), Error> {
    if got > 0 {
        *idle = 0;
    } else {
        *idle += 1;
        if *idle > 1000 && !a.busy {
            port.poll(Some(Duration::from_millis(100)))?;
        }
    }
    Ok(())
}

fn open(name: &str, a: &Args) -> Result<Netmap, Error> {
    let port = common::open(name, a.fallback, a.promisc)?;
    let why = common::fallback_note(&port);
    let (txs, rxs) = port.num_slots();
    println!(
        "pkt_gen: {} on {} backend, {} TX / {} RX rings of {} / {} slots{why}",
        port.name(),
        port.backend(),
        port.num_tx_rings(),
        port.num_rx_rings(),
        txs,
        rxs
    );
    Ok(port)
}

fn run(a: &Args) -> Result<(), Error> {
    let port = open(&a.port, a)?;
    let m = match a.mode {
        Mode::Tx => tx(&port, a)?,
        Mode::Rx => rx(&port, a)?,
        Mode::Ping => ping(&port, a)?,
        Mode::Pong => pong(&port, a)?,
        Mode::Pair => {
            let peer = open(a.peer.as_deref().unwrap_or_default(), a)?;
            let b = a.clone();
            let receiver = thread::spawn(move || {
                let mut b = b;
                // The receiver stops a moment after the sender.
                b.secs = b.secs.map(|s| s + 0.5);
                rx(&peer, &b).map(|m| m.summary())
            });
            let m = tx(&port, a)?;
            m.summary();
            return receiver.join().unwrap_or_else(|_| {
                Err(Error::RingCorrupt {
                    ring: 0,
                    what: "the receiver thread panicked".into(),
                })
            });
        }
    };
    m.summary();
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("pkt_gen: {why}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pkt_gen: {e}");
            ExitCode::FAILURE
        }
    }
}
