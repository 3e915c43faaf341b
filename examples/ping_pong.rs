//! Bounces packets between two ports and reports round-trip latency and rate.
//!
//! ```text
//! cargo run --release --example ping_pong                 # embedded pipe (or a kernel pipe)
//! cargo run --release --example ping_pong -- A B [-n COUNT] [-s SIZE] [--fallback]
//! ```
//!
//! Frames are Ethernet broadcasts of the experimental EtherType 0x88b5, so
//! they cross switches and veth pairs too; other traffic is ignored.
//!
//! With no ports named it opens a pipe pair: `vale0:nmrs{1`/`vale0:nmrs}1`
//! when `/dev/netmap` opens, else the embedded `emu:pingpong{1`/`}1`. The
//! pinger sends one packet at a time carrying a sequence number; the ponger
//! sends each back; the pinger checks the number and times the round trip.

use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use netmap_rs::prelude::*;
use netmap_rs::Fallback;

struct Args {
    a: String,
    b: String,
    count: u64,
    size: usize,
    fallback: Fallback,
}

fn usage(why: &str) -> ExitCode {
    eprintln!("ping_pong: {why}");
    eprintln!("usage: ping_pong [PORT_A PORT_B] [-n COUNT] [-s SIZE] [--fallback]");
    eprintln!("  --fallback  use AF_PACKET for real interfaces where netmap is unavailable");
    ExitCode::from(2)
}

fn parse_args() -> Result<Args, String> {
    let mut ports = Vec::new();
    let mut count = 100_000u64;
    let mut size = 64usize;
    let mut fallback = Fallback::None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-n" => {
                count = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("-n takes a positive count")?
            }
            "-s" => {
                size = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| (60..=65535).contains(&n))
                    .ok_or("-s takes a size from 60 to 65535 bytes")?
            }
            "--fallback" => fallback = Fallback::AfPacket,
            "-h" | "--help" => return Err("help".into()),
            p if p.starts_with('-') => return Err(format!("unknown option {p}")),
            p => ports.push(p.to_owned()),
        }
    }
    let (a, b) = match ports.len() {
        0 if netmap_rs::probe::probe().device.is_available() => {
            ("vale0:nmrs{1".into(), "vale0:nmrs}1".into())
        }
        0 => ("emu:pingpong{1".into(), "emu:pingpong}1".into()),
        2 => (ports[0].clone(), ports[1].clone()),
        _ => return Err("name two ports, or none".into()),
    };
    Ok(Args {
        a,
        b,
        count,
        size,
        fallback,
    })
}

/// Waits up to `limit` for the next packet on `rx` that `f` accepts
/// (returns `Some` for): busy-polls the ring for a while (latency), then
/// sleeps in `poll` (CPU).
fn recv_one<T>(
    port: &Netmap,
    rx: &mut RxRing<'_>,
    limit: Duration,
    mut f: impl FnMut(&[u8]) -> Option<T>,
) -> Result<T, Error> {
    let deadline = Instant::now() + limit;
    let mut spins = 0u32;
    loop {
        while let Some(frame) = rx.recv() {
            if let Some(v) = f(frame.payload()) {
                return Ok(v);
            }
        }
        if rx.sync()? == 0 {
            spins += 1;
            if spins > SPINS {
                if Instant::now() >= deadline {
                    return Err(Error::Io {
                        op: format!("waiting for a packet on {}", port.name()),
                        source: std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("nothing arrived within {limit:?}"),
                        ),
                    });
                }
                port.poll(Some(Duration::from_millis(100)))?;
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// How many empty syncs `recv_one` tries before it sleeps.
const SPINS: u32 = 2000;
/// How long the pinger waits for a reply, and the ponger for the next ping.
const REPLY_WAIT: Duration = Duration::from_secs(2);
const PING_WAIT: Duration = Duration::from_secs(10);

/// The frames are Ethernet broadcasts of an experimental EtherType, so
/// switches (VALE, a veth's peer) flood them and stray traffic is ignored:
/// destination (6) | source (6) | EtherType (2) | sequence number (8).
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
const PING_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const PONG_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const HDR: usize = 14;

/// The sequence number of one of our frames, or `None` for other traffic.
fn seq_of(p: &[u8]) -> Option<u64> {
    if p.get(12..HDR)? != ETHERTYPE {
        return None;
    }
    Some(u64::from_le_bytes(p.get(HDR..HDR + 8)?.try_into().ok()?))
}

fn send_one(port: &Netmap, tx: &mut TxRing<'_>, data: &[u8]) -> Result<(), Error> {
    loop {
        match tx.send(data) {
            Ok(()) => return tx.sync(),
            Err(Error::RingFull { .. }) => {
                tx.sync()?;
                port.poll_writable(Some(Duration::from_millis(100)))?;
            }
            Err(e) => return Err(e),
        }
    }
}

fn ponger(port: Netmap, count: u64) -> Result<(), Error> {
    let mut rx = port.rx_ring(0)?;
    let mut tx = port.tx_ring(0)?;
    let mut buf = Vec::new();
    for _ in 0..count {
        recv_one(&port, &mut rx, PING_WAIT, |p| {
            seq_of(p)?;
            buf.clear();
            buf.extend_from_slice(p);
            Some(())
        })?;
        buf[6..12].copy_from_slice(&PONG_MAC);
        send_one(&port, &mut tx, &buf)?;
    }
    Ok(())
}

fn pinger(port: Netmap, count: u64, size: usize) -> Result<Vec<Duration>, Error> {
    let mut rx = port.rx_ring(0)?;
    let mut tx = port.tx_ring(0)?;
    let mut pkt = vec![0u8; size];
    pkt[..6].fill(0xff);
    pkt[6..12].copy_from_slice(&PING_MAC);
    pkt[12..HDR].copy_from_slice(&ETHERTYPE);
    let mut rtts = Vec::with_capacity(count as usize);
    for seq in 0..count {
        pkt[HDR..HDR + 8].copy_from_slice(&seq.to_le_bytes());
        let t0 = Instant::now();
        send_one(&port, &mut tx, &pkt)?;
        // Only the ponger's copy counts (a broadcast may come back to us
        // from a switch that floods it to every port).
        let back = recv_one(&port, &mut rx, REPLY_WAIT, |p| {
            (p.get(6..12) == Some(&PONG_MAC[..])).then(|| seq_of(p)).flatten()
        })?;
        rtts.push(t0.elapsed());
        if back != seq {
            return Err(Error::RingCorrupt {
                ring: rx.id(),
                what: format!("expected packet {seq}, got {back}"),
            });
        }
    }
    Ok(rtts)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(why) => return usage(&why),
    };
    let open = |name: &str| NetmapBuilder::new(name).fallback(args.fallback).build();
    let (a, b) = match open(&args.a).and_then(|a| Ok((a, open(&args.b)?))) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ping_pong: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "ping_pong: {} <-> {} ({} backend), {} packets of {} bytes",
        a.name(),
        b.name(),
        a.backend(),
        args.count,
        args.size
    );
    let count = args.count;
    let pong = thread::spawn(move || ponger(b, count));
    let start = Instant::now();
    let ping = pinger(a, count, args.size);
    let elapsed = start.elapsed();
    let pong = pong.join().unwrap_or_else(|_| {
        Err(Error::RingCorrupt {
            ring: 0,
            what: "the ponger thread panicked".into(),
        })
    });
    let mut rtts = match (ping, pong) {
        (Ok(r), Ok(())) => r,
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("ping_pong: {e}");
            return ExitCode::FAILURE;
        }
    };
    rtts.sort_unstable();
    println!(
        "round trips: {}  rate: {:.0} round trips/s ({:.0} packets/s)",
        rtts.len(),
        rtts.len() as f64 / elapsed.as_secs_f64(),
        2.0 * rtts.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "rtt: min {:?}  p50 {:?}  p90 {:?}  p99 {:?}  p99.9 {:?}  max {:?}",
        rtts[0],
        percentile(&rtts, 0.5),
        percentile(&rtts, 0.9),
        percentile(&rtts, 0.99),
        percentile(&rtts, 0.999),
        rtts[rtts.len() - 1]
    );
    ExitCode::SUCCESS
}
