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
//! A line of progress is printed each second; the default 100 000 round
//! trips take about a second on an idle machine.
//!
//! Both ends must be separate ports: two ends of a pipe, two VALE ports, or
//! the two ends of a veth pair. One interface named twice is refused (a
//! loopback, for one, delivers every frame to every socket on it, so it
//! cannot separate a pinger from a ponger). A stray duplicate of a frame (a
//! flooding switch) is skipped and counted; a reply that answers a ping not
//! yet sent is reported as what it is, a peer that is not our ponger.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/value.rs"]
mod value;

use std::fmt;
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

const USAGE: &str = "\
usage: ping_pong [PORT_A PORT_B] [-n COUNT] [-s SIZE] [--fallback]
  PORT_A PORT_B  the pinger's and the ponger's ports, two separate ends (default: a pipe,
                 vale0:nmrs{1 and }1 where /dev/netmap opens, else emu:pingpong{1 and }1)
  -n COUNT       round trips, at least 1 (default 100000)
  -s SIZE        frame size, 60 to 65535 bytes (default 64)
  --fallback     use AF_XDP, then AF_PACKET, for real interfaces where netmap is
                 unavailable
  -h, --help     this text";

/// The arguments, or `None` for `--help`.
fn parse_args(p: &mut lexopt::Parser) -> Result<Option<Args>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut ports = Vec::new();
    let mut count = 100_000u64;
    let mut size = 64usize;
    let mut fallback = Fallback::None;
    while let Some(arg) = p.next()? {
        match arg {
            Short('n') => count = value::checked("-n", p.value()?, "a positive count", |&n| n > 0)?,
            Short('s') => {
                size = value::checked("-s", p.value()?, "a size from 60 to 65535 bytes", |n| {
                    (60..=65535).contains(n)
                })?
            }
            Long("fallback") => fallback = Fallback::Any,
            Short('h') | Long("help") => return Ok(None),
            Value(port) => ports.push(port.string()?),
            _ => return Err(arg.unexpected()),
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
    if a.trim_start_matches("afpacket:") == b.trim_start_matches("afpacket:") {
        return Err(format!(
            "`{a}` and `{b}` are one port: name two separate ends (a pipe's `{{1` and `}}1`, \
             two VALE ports, or the two interfaces of a veth pair); one interface, a loopback \
             above all, delivers every frame to both ends and cannot separate them"
        )
        .into());
    }
    Ok(Some(Args {
        a,
        b,
        count,
        size,
        fallback,
    }))
}

/// What stops a run: the port, or the exchange itself.
#[derive(Debug)]
enum Failure {
    /// A call on a port failed.
    Port(Error),
    /// Nothing we were waiting for arrived in time.
    Timeout { port: String, limit: Duration },
    /// The peer answered a ping that was not sent: whoever answers is not
    /// our ponger, or it sees our frames twice.
    Protocol { sent: u64, got: u64 },
    /// The ponger thread panicked.
    Panicked,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Port(e)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Port(e) => e.fmt(f),
            Failure::Timeout { port, limit } => write!(
                f,
                "nothing arrived on {port} within {limit:?}; check that the two ports are \
                 connected (a pipe's two ends, one VALE switch, or a veth pair)"
            ),
            Failure::Protocol { sent, got } => write!(
                f,
                "the reply to ping {sent} answers ping {got}, which was never sent: another \
                 program answers on these ports, or they see each other's frames twice; use \
                 two ends of a pipe or a veth pair, with nothing else on them"
            ),
            Failure::Panicked => f.write_str("the ponger thread panicked"),
        }
    }
}

/// Waits up to `limit` for the next packet on `rx` that `f` accepts
/// (returns `Some` for): busy-polls the ring for a while (latency), then
/// sleeps in `poll` (CPU).
fn recv_one<T>(
    port: &Netmap,
    rx: &mut RxRing<'_>,
    limit: Duration,
    mut f: impl FnMut(&[u8]) -> Option<T>,
) -> Result<T, Failure> {
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
                    return Err(Failure::Timeout {
                        port: port.name().to_owned(),
                        limit,
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

/// Answers `count` pings, each once: a copy of a ping already answered is
/// skipped, and so are frames that are not pings (our own replies, where the
/// medium echoes them). Returns how many frames it skipped.
fn ponger(port: Netmap, count: u64) -> Result<u64, Failure> {
    let mut rx = port.rx_ring(0)?;
    let mut tx = port.tx_ring(0)?;
    let mut buf = Vec::new();
    let mut skipped = 0u64;
    for next in 0..count {
        recv_one(&port, &mut rx, PING_WAIT, |p| {
            if p.get(6..12) != Some(&PING_MAC[..]) || seq_of(p)? < next {
                skipped += 1;
                return None;
            }
            buf.clear();
            buf.extend_from_slice(p);
            Some(())
        })?;
        buf[6..12].copy_from_slice(&PONG_MAC);
        send_one(&port, &mut tx, &buf)?;
    }
    Ok(skipped)
}

/// What the pinger measured.
struct Pings {
    rtts: Vec<Duration>,
    /// Late copies of replies already counted.
    skipped: u64,
}

fn pinger(port: Netmap, count: u64, size: usize) -> Result<Pings, Failure> {
    let mut rx = port.rx_ring(0)?;
    let mut tx = port.tx_ring(0)?;
    let mut pkt = vec![0u8; size];
    pkt[..6].fill(0xff);
    pkt[6..12].copy_from_slice(&PING_MAC);
    pkt[12..HDR].copy_from_slice(&ETHERTYPE);
    let mut rtts = Vec::with_capacity(count as usize);
    let mut skipped = 0u64;
    let (start, mut report) = (Instant::now(), Duration::from_secs(1));
    for seq in 0..count {
        pkt[HDR..HDR + 8].copy_from_slice(&seq.to_le_bytes());
        let t0 = Instant::now();
        send_one(&port, &mut tx, &pkt)?;
        // Only the ponger's reply to this ping counts: a broadcast may come
        // back to us from a switch that floods it to every port, and a late
        // copy of an earlier reply is skipped.
        let back = recv_one(&port, &mut rx, REPLY_WAIT, |p| {
            let back = (p.get(6..12) == Some(&PONG_MAC[..])).then(|| seq_of(p))??;
            if back < seq {
                skipped += 1;
                return None;
            }
            Some(back)
        })?;
        rtts.push(t0.elapsed());
        if back != seq {
            return Err(Failure::Protocol { sent: seq, got: back });
        }
        if start.elapsed() >= report {
            println!("  {} of {count} round trips in {:.1?}", seq + 1, start.elapsed());
            report += Duration::from_secs(1);
        }
    }
    Ok(Pings { rtts, skipped })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> ExitCode {
    let args = match cli::parse("ping_pong", USAGE, parse_args) {
        Ok(a) => a,
        Err(code) => return code,
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
    let pong = pong.join().unwrap_or(Err(Failure::Panicked));
    let (Pings { mut rtts, skipped }, pong_skipped) = match (ping, pong) {
        (Ok(p), Ok(s)) => (p, s),
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
    if skipped + pong_skipped > 0 {
        println!(
            "skipped {skipped} duplicate replies and {pong_skipped} frames that were not new \
             pings (a switch floods broadcasts back to their sender)"
        );
    }
    ExitCode::SUCCESS
}
